//! The accept loop: TCP, optional TLS, then HTTP/1.1 or HTTP/2 into a `Handler`, under limits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::acme::ACME_TLS_ALPN;
use crate::metrics::ConnMetrics;
use crate::response::Body;

/// The connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The listener's name ("https", "plain", "admin").
    pub listener: &'static str,
}

/// What a listener serves: the public `Proxy` or the admin endpoints.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Response<Body>> + Send;
}

/// Bounds on what one client can hold (DESIGN.md: every wait has a bound).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once per listener; further clients wait in the backlog.
    pub max_connections: usize,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// The first request head must arrive within this of the connection (or handshake),
    /// and every later head within this of its first byte (slowloris).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Largest HTTP/1 request head and HTTP/2 header list, in bytes.
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_concurrent_streams: 100,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Decrements the open-connections gauge when the connection task ends, however it ends.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Pause after a failed `accept` (such as running out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Request activity on one connection, written by its service, read by its watchdog.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` when the last request ended; `u64::MAX` before any.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// When the connection may be closed if nothing happens until then.
    fn deadline(&self, limits: &Limits) -> Instant {
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => self.started + limits.header_timeout,
            ms => self.started + Duration::from_millis(ms) + limits.idle_timeout,
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Marks one request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.started.elapsed().as_millis() as u64;
        self.0.last_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(None);
    builder
}

/// One listening socket and how its connections are served.
pub struct Endpoint {
    /// The listener's name in logs and metrics.
    pub name: &'static str,
    pub listener: TcpListener,
    /// With it, every connection is TLS.
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    pub metrics: ConnMetrics,
}

/// Serves `endpoint` until `shutdown` completes, then drains open connections for at
/// most `limits.drain_timeout`.
pub async fn serve<H: Handler>(endpoint: Endpoint, handler: Arc<H>, shutdown: impl Future<Output = ()>) {
    let Endpoint {
        name,
        listener,
        tls,
        limits,
        metrics,
    } = endpoint;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(listener = name, listen = %local, scheme, "accepting connections");

    let builder = builder(&limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A permit per connection: at the limit, new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Never let one failed accept end the listener.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        let span = tracing::info_span!("conn", %peer, listener = name);
        let conn = ConnInfo { peer, listener: name };
        tokio::spawn(
            async move {
                let _permit = permit;
                metrics.open.inc();
                let _open = OpenConnection(metrics.open.clone());
                match tls {
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                                // RFC 8737: a TLS-ALPN-01 validation ends with the handshake.
                                debug!("ACME validation handshake answered");
                            }
                            Ok(Ok(stream)) => serve_connection(stream, builder, handler, watcher, limits, conn).await,
                            Ok(Err(err)) => {
                                metrics.handshake_errors.inc();
                                debug!(error = %err, "TLS handshake failed");
                            }
                            Err(_) => {
                                metrics.handshake_timeouts.inc();
                                debug!(timeout = ?limits.tls_handshake_timeout, "TLS handshake timed out");
                            }
                        }
                    }
                    None => serve_connection(stream, builder, handler, watcher, limits, conn).await,
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!(listen = %local, "connections drained"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            warn!(listen = %local, timeout = ?limits.drain_timeout, "drain timed out; closing remaining connections");
        }
    }
}

/// Runs one connection until it ends, is idle past its deadline, or shutdown drains it.
async fn serve_connection<S, H>(
    stream: S,
    builder: auto::Builder<TokioExecutor>,
    handler: Arc<H>,
    watcher: hyper_util::server::graceful::Watcher,
    limits: Limits,
    conn: ConnInfo,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        service_fn(move |request| {
            let in_flight = activity.begin();
            let handler = handler.clone();
            async move {
                let response = handler.handle(request, conn).await;
                drop(in_flight);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
    tokio::pin!(conn);
    // The deadline moves from `header_timeout` to `idle_timeout` after the first request;
    // looking at the shorter of the two first catches that move, later ones only extend it.
    let mut check_at = activity.started + limits.header_timeout.min(limits.idle_timeout);
    loop {
        tokio::select! {
            result = &mut conn => {
                if let Err(err) = result {
                    debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check_at) => {
                let deadline = activity.deadline(&limits);
                if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    // Requests end within the deadline; look again shortly.
                    check_at = Instant::now() + Duration::from_millis(100);
                } else if Instant::now() >= deadline {
                    debug!("closing a connection with no request within its timeout");
                    return;
                } else {
                    check_at = deadline;
                }
            }
        }
    }
}
