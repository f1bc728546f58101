//! The accept loop: TCP, optional TLS, then HTTP/1.1 or HTTP/2 into a `Handler`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::response::Body;

/// What a listener serves: the public `Proxy` or the admin endpoints.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

/// A client must finish the TLS handshake within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a complete request head within this (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (such as running out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then drains open connections for at
/// most `DRAIN_TIMEOUT`. With `tls`, every connection is TLS.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    let local = listener.local_addr().ok();
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(listen = ?local, scheme, "accepting connections");

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let span = tracing::debug_span!("conn", %peer, scheme);
        tokio::spawn(
            async move {
                let service = service_fn(move |request| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
                });
                let result = match tls {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                debug!(error = %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(timeout = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        watcher.watch(conn).await
                    }
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        watcher.watch(conn).await
                    }
                };
                if let Err(err) = result {
                    debug!(error = %err, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!(listen = ?local, "connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => warn!(listen = ?local, timeout = ?DRAIN_TIMEOUT, "drain timed out; closing remaining connections"),
    }
}
