//! One connection's life: its header, idle and send deadlines, and how it is closed.
//!
//! hyper's own HTTP/1 header timer starts when a connection goes idle, so it would close
//! every keep-alive connection at `header_timeout`; it is off, and this watchdog keeps
//! every deadline of a connection instead, from what `Watched` sees on the stream and
//! `Activity` records (which computes the next deadline):
//!
//! - before the first request: the head must arrive within `header_timeout`;
//! - after a request, idle: closed `idle_timeout` after the request ended (or after its
//!   response last made progress), HTTP/2 with a GOAWAY;
//! - HTTP/1, once bytes of a next head arrive: that head must be complete within
//!   `header_timeout` of its first byte (slowloris);
//! - a write that stays blocked for `send_timeout` fails the connection (`Watched`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::config::limits::Limits;
use crate::edge::activity::{Activity, Next};
use crate::edge::watched::Watched;
use crate::model::listener::Listener;
use crate::telemetry::connections::ConnMetrics;

/// The connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: Listener,
}

/// The body of every answer a listener sends: held whole in memory, sent at once.
pub type Body = Full<Bytes>;

/// What a listener serves: the public `Proxy` or the admin endpoints.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Response<Body>> + Send;
}

/// How long a connection closed by its watchdog gets to say goodbye (HTTP/2 GOAWAY, the
/// close of an idle HTTP/1 connection) before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where a listener is in its life, sent to every connection it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Finish what is in flight, then close (HTTP/2 GOAWAY, HTTP/1 without keep-alive).
    Draining,
    /// The drain timed out: close now.
    Closing,
}

/// Why the watchdog ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Header,
    Idle,
    Drain,
}

/// What every connection of a listener is served with.
pub(crate) struct Served<H> {
    pub builder: auto::Builder<TokioExecutor>,
    pub handler: Arc<H>,
    pub limits: Limits,
    /// The listener's phase: connections close when it drains.
    pub phase: watch::Receiver<Phase>,
    pub metrics: ConnMetrics,
}

impl<H> Clone for Served<H> {
    fn clone(&self) -> Self {
        Served {
            builder: self.builder.clone(),
            handler: self.handler.clone(),
            limits: self.limits,
            phase: self.phase.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Runs one connection until it ends, misses a deadline, or its listener drains.
/// `h2` is known from ALPN on TLS; on plain connections it is learnt from the requests.
pub(crate) async fn serve_connection<S, H>(stream: S, h2: bool, conn: ConnInfo, served: Served<H>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let Served {
        builder,
        handler,
        limits,
        mut phase,
        metrics,
    } = served;
    let activity = Arc::new(Activity::new(h2));
    let service = {
        let activity = activity.clone();
        service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let in_flight = activity.begin(request.version() == http::Version::HTTP_2);
            let handler = handler.clone();
            async move {
                let response = handler.handle(request, conn).await;
                drop(in_flight);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let io = Watched::new(stream, activity.clone(), limits.send_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let ended = |result: Result<(), Box<dyn std::error::Error + Send + Sync>>| {
        if activity.ended_by_send_timeout() {
            metrics.send_timeouts.inc();
            debug!(timeout = ?limits.send_timeout, "closed a connection whose client stopped reading");
        } else if let Err(err) = result {
            debug!(error = %err, "connection ended with an error");
        }
    };
    // A deadline only moves earlier when a head starts, which gives it `header_timeout`
    // from then: looking at least that often never misses one.
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    let mut check_at = activity.started() + recheck;
    let ending = loop {
        tokio::select! {
            result = connection.as_mut() => return ended(result),
            () = tokio::time::sleep_until(check_at) => {
                let now = Instant::now();
                match activity.next(&limits, now) {
                    Next::Busy(at) => check_at = at,
                    Next::Header(at) if now >= at => break Ending::Header,
                    Next::Idle(at) if now >= at => break Ending::Idle,
                    Next::Header(at) | Next::Idle(at) => check_at = at.min(now + recheck),
                }
            }
            _ = phase.wait_for(|p| *p != Phase::Serving) => break Ending::Drain,
        }
    };
    match ending {
        Ending::Header if !activity.is_h2() => {
            // A head that never completed gets no answer; nothing is in flight.
            debug!(timeout = ?limits.header_timeout, "closing a connection whose request head did not arrive in time");
            metrics.header_timeouts.inc();
            return;
        }
        Ending::Header => {
            debug!(timeout = ?limits.header_timeout, "no request in time: GOAWAY");
            metrics.header_timeouts.inc();
        }
        Ending::Idle => {
            debug!(timeout = ?limits.idle_timeout, "closing an idle connection");
            metrics.idle_closes.inc();
        }
        Ending::Drain => {}
    }
    // HTTP/2: GOAWAY, then close when the streams are done; HTTP/1: close when idle, or
    // after the response in flight.
    connection.as_mut().graceful_shutdown();
    let grace = async {
        match ending {
            Ending::Drain => {
                let _ = phase.wait_for(|p| *p == Phase::Closing).await;
            }
            _ => tokio::time::sleep(CLOSE_GRACE).await,
        }
    };
    tokio::select! {
        result = connection.as_mut() => ended(result),
        () = grace => debug!("closing a connection that did not finish closing in time"),
    }
}
