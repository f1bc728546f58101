//! The accept loop: TCP, optional TLS, then HTTP/1.1 or HTTP/2 into a `Handler`, under limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::config::limits::Limits;
use crate::edge::address_limit::AddressLimit;
use crate::edge::connection::{serve_connection, ConnInfo, Handler, Phase, Served, CLOSE_GRACE};
use crate::model::listener::Listener;
use crate::telemetry::connections::ConnMetrics;
use crate::tls::challenges::ACME_TLS_ALPN;

/// Decrements the open-connections gauge when the connection task ends, however it ends.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Pause after a failed `accept` (such as running out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The kernel receive buffer of each connection (SO_RCVBUF): requests are small, and a
/// client that sends more than the proxy reads fills this much kernel memory, not more.
const RECEIVE_BUFFER: usize = 8 * 1024;

/// Unsent TLS records rustls may hold per connection (its default is 64 KiB). One full
/// record fits; beyond it a client that does not read leaves its bytes in the kernel's
/// socket buffer instead of the process's memory, and its write blocks sooner.
const TLS_SEND_BUFFER: usize = 16 * 1024 + 512;

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header timer: it starts when a connection goes idle, which would close
    // keep-alive connections at `header_timeout`; `connection` keeps the deadlines.
    builder
        .http1()
        .header_read_timeout(None)
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
    /// Which listener this is, in logs and metrics.
    pub name: Listener,
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
    info!(listener = name.as_str(), listen = %local, scheme, "accepting connections");

    let builder = builder(&limits);
    // A permit per connection: at the limit, new clients wait in the kernel's backlog.
    // All permits back is the sign that every connection has ended.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = AddressLimit::new(limits.max_connections_per_address);
    let (set_phase, phase) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
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
        let Some(slot) = addresses.admit(peer.ip()) else {
            // Closed at once, so the client cannot queue; one client does not get a log
            // line per attempt, the counter shows the rate.
            metrics.refused_per_address.inc();
            debug!(%peer, listener = name.as_str(), limit = limits.max_connections_per_address, "connection refused: too many from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Socket memory counts against a container's memory limit like the process's own:
        // fixed buffers keep what a client that stops reading can pin to a known size.
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
        if limits.send_buffer_bytes > 0 {
            let _ = socket.set_send_buffer_size(limits.send_buffer_bytes);
        }
        let served = Served {
            builder: builder.clone(),
            handler: handler.clone(),
            limits,
            phase: phase.clone(),
            metrics: metrics.clone(),
        };
        let tls = tls.clone();
        let metrics = metrics.clone();
        let span = tracing::info_span!("conn", %peer, listener = name.as_str());
        let conn = ConnInfo { peer, listener: name };
        tokio::spawn(
            async move {
                let _permit = permit;
                let _slot = slot;
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
                            Ok(Ok(mut stream)) => {
                                stream.get_mut().1.set_buffer_limit(Some(TLS_SEND_BUFFER));
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                serve_connection(stream, h2, conn, served).await
                            }
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
                    None => serve_connection(stream, false, conn, served).await,
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    // Every connection finishes what it has in flight (HTTP/2 gets a GOAWAY), then ends;
    // past the drain timeout the rest are closed.
    let _ = set_phase.send(Phase::Draining);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all))
        .await
        .is_ok();
    if drained {
        debug!(listen = %local, "connections drained");
    } else {
        warn!(listen = %local, timeout = ?limits.drain_timeout, "drain timed out; closing remaining connections");
        let _ = set_phase.send(Phase::Closing);
        let _ = tokio::time::timeout(CLOSE_GRACE, permits.acquire_many(all)).await;
    }
}
