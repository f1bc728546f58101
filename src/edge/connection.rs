//! One connection's life: its header, idle and send deadlines, and how it is closed.
//!
//! hyper's own HTTP/1 header timer starts when a connection goes idle, so it would close
//! every keep-alive connection at `header_timeout`; it is off, and this watchdog keeps
//! every deadline of a connection instead, from what `Watched` sees on the stream:
//!
//! - before the first request: the head must arrive within `header_timeout`;
//! - after a request, idle: closed `idle_timeout` after the request ended (or after its
//!   response last made progress), HTTP/2 with a GOAWAY;
//! - HTTP/1, once bytes of a next head arrive: that head must be complete within
//!   `header_timeout` of its first byte (slowloris);
//! - a write that stays blocked for `send_timeout` fails the connection (`Watched`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use crate::config::limits::Limits;
use crate::edge::response::Body;
use crate::model::listener::Listener;
use crate::telemetry::connections::ConnMetrics;

/// The connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: Listener,
}

/// What a listener serves: the public `Proxy` or the admin endpoints.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Response<Body>> + Send;
}

/// A timestamp field that holds no time.
const NEVER: u64 = u64::MAX;

/// How long a connection closed by its watchdog gets to say goodbye (HTTP/2 GOAWAY, the
/// close of an idle HTTP/1 connection) before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often the watchdog looks again while a request is in flight (requests end within
/// `server.deadline`).
const BUSY_RECHECK: Duration = Duration::from_millis(100);

/// Where a listener is in its life, sent to every connection it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Finish what is in flight, then close (HTTP/2 GOAWAY, HTTP/1 without keep-alive).
    Draining,
    /// The drain timed out: close now.
    Closing,
}

/// What happened on one connection, and when (milliseconds after `started`).
///
/// Written by the service (`begin`, `InFlight` drop: on the connection task for HTTP/1,
/// on stream tasks for HTTP/2) and by `Watched` (reads and writes, on the connection
/// task); read by the watchdog, on the connection task.
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended; `NEVER` before the first.
    last_end: AtomicU64,
    /// When bytes first arrived after the last request head was read; `NEVER` when none
    /// have since. For HTTP/1 these are the next head (a GET has no body), whose
    /// `header_timeout` runs from here.
    head_started: AtomicU64,
    /// When the write side blocked; `NEVER` while writes go through.
    write_blocked: AtomicU64,
    /// When a blocked write last went through: the connection was busy until then.
    write_resumed: AtomicU64,
    /// HTTP/2 (ALPN or a request's version): bytes between requests are frames such as
    /// PING or WINDOW_UPDATE, not the start of a head.
    h2: AtomicBool,
    /// A write stayed blocked for `send_timeout`.
    send_timed_out: AtomicBool,
}

/// What the watchdog should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Something is in flight; look again at this time.
    Busy(Instant),
    /// Close at this time unless something happens: the head did not arrive in time.
    Header(Instant),
    /// Close at this time unless something happens: the connection was idle too long.
    Idle(Instant),
}

impl Activity {
    pub(crate) fn new(h2: bool) -> Activity {
        Activity::starting_at(Instant::now(), h2)
    }

    fn starting_at(started: Instant, h2: bool) -> Activity {
        Activity {
            started,
            in_flight: AtomicUsize::new(0),
            last_end: AtomicU64::new(NEVER),
            head_started: AtomicU64::new(NEVER),
            write_blocked: AtomicU64::new(NEVER),
            write_resumed: AtomicU64::new(NEVER),
            h2: AtomicBool::new(h2),
            send_timed_out: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        // Saturates after 584 million years; never NEVER in practice.
        self.started.elapsed().as_millis().min(u128::from(NEVER - 1)) as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// A request head was read and its handler starts.
    fn begin(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.head_started.store(NEVER, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn read(&self) {
        if self.head_started.load(Ordering::Relaxed) == NEVER && !self.is_h2() {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn write_blocked(&self) {
        self.write_blocked.store(self.now_ms(), Ordering::Relaxed);
    }

    fn write_resumed(&self) {
        self.write_blocked.store(NEVER, Ordering::Relaxed);
        self.write_resumed.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the watchdog must act, given what happened so far.
    pub(crate) fn next(&self, limits: &Limits, now: Instant) -> Next {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Next::Busy(now + BUSY_RECHECK);
        }
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if blocked != NEVER {
            // `Watched` fails the connection when the block lasts `send_timeout`.
            return Next::Busy((self.at(blocked) + limits.send_timeout).max(now + BUSY_RECHECK));
        }
        let last_end = self.last_end.load(Ordering::Relaxed);
        if last_end == NEVER {
            return Next::Header(self.started + limits.header_timeout);
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NEVER && !self.is_h2() {
            return Next::Header(self.at(head) + limits.header_timeout);
        }
        let resumed = self.write_resumed.load(Ordering::Relaxed);
        let idle_since = match resumed {
            NEVER => last_end,
            resumed => last_end.max(resumed),
        };
        Next::Idle(self.at(idle_since) + limits.idle_timeout)
    }
}

/// Marks one request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_end.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's stream, watched: reads tell `Activity` that a head has begun, and a
/// write (or flush) that stays blocked for `send_timeout` fails with `TimedOut`, which
/// ends the connection. hyper has no write timeout of its own.
///
/// It wraps the stream above TLS, so reads are request bytes, not TLS records, and a
/// write blocks once rustls' buffer is full and the socket takes nothing.
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Runs while a write is blocked; made on the first block, reset on later ones.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    read_any: bool,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>, send_timeout: Duration) -> Watched<S> {
        Watched {
            inner,
            activity,
            send_timeout,
            stall: None,
            stalled: false,
            read_any: false,
        }
    }

    fn after_write<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                if self.stalled {
                    self.stalled = false;
                    self.activity.write_resumed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.stalled {
                    self.stalled = true;
                    self.activity.write_blocked();
                    let until = Instant::now() + self.send_timeout;
                    match &mut self.stall {
                        Some(sleep) => sleep.as_mut().reset(until),
                        None => self.stall = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                }
                let expired = self.stall.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if expired {
                    self.activity.send_timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {:?} (send timeout)", self.send_timeout),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

/// How an HTTP/2 connection without TLS (prior knowledge) begins.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if !this.read_any {
                this.read_any = true;
                // Known before the first request, an idle HTTP/2 connection gets a GOAWAY.
                if buf.filled()[before..].starts_with(H2_PREFACE) {
                    this.activity.h2.store(true, Ordering::Relaxed);
                }
            }
            this.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_write(cx, result)
    }
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
        if activity.send_timed_out.load(Ordering::Relaxed) {
            metrics.send_timeouts.inc();
            debug!(timeout = ?limits.send_timeout, "closed a connection whose client stopped reading");
        } else if let Err(err) = result {
            debug!(error = %err, "connection ended with an error");
        }
    };
    // A deadline only moves earlier when a head starts, which gives it `header_timeout`
    // from then: looking at least that often never misses one.
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    let mut check_at = activity.started + recheck;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(5),
            ..Limits::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_head_has_header_timeout_from_the_connection() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::starting_at(t0, false));
        assert_eq!(a.next(&limits(), t0), Next::Header(t0 + ms(1000)));
        // Bytes of the first head do not move it: the whole head within header_timeout.
        a.head_started.store(500, Ordering::Relaxed);
        assert_eq!(a.next(&limits(), t0), Next::Header(t0 + ms(1000)));
    }

    #[test]
    fn an_idle_http1_connection_lives_until_idle_timeout_and_a_new_head_gets_header_timeout() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::starting_at(t0, false));
        let request = a.begin(false);
        assert!(matches!(a.next(&limits(), t0), Next::Busy(_)));
        drop(request);
        a.last_end.store(200, Ordering::Relaxed);
        // Idle after the request: idle_timeout (3 s), not header_timeout (1 s).
        assert_eq!(a.next(&limits(), t0), Next::Idle(t0 + ms(3200)));
        // The first byte of a next head at 2.5 s: the head must be complete by 3.5 s.
        a.head_started.store(2500, Ordering::Relaxed);
        assert_eq!(a.next(&limits(), t0), Next::Header(t0 + ms(3500)));
        // Read whole: a new request; the head clock is cleared.
        let _request = a.begin(false);
        assert_eq!(a.head_started.load(Ordering::Relaxed), NEVER);
    }

    #[test]
    fn http2_frames_between_requests_do_not_start_a_head() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::starting_at(t0, true));
        a.last_end.store(100, Ordering::Relaxed);
        a.read();
        assert_eq!(a.head_started.load(Ordering::Relaxed), NEVER);
        assert_eq!(a.next(&limits(), t0), Next::Idle(t0 + ms(3100)));
    }

    #[test]
    fn a_blocked_write_keeps_the_connection_busy_and_idle_counts_from_its_end() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::starting_at(t0, false));
        a.last_end.store(100, Ordering::Relaxed);
        a.write_blocked.store(150, Ordering::Relaxed);
        assert_eq!(a.next(&limits(), t0), Next::Busy(t0 + ms(5150)));
        a.write_blocked.store(NEVER, Ordering::Relaxed);
        a.write_resumed.store(4000, Ordering::Relaxed);
        assert_eq!(a.next(&limits(), t0), Next::Idle(t0 + ms(7000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_for_send_timeout_fails_and_one_that_resumes_does_not() {
        // A pipe whose reader never reads: the writer fills it, then blocks.
        let (client, server) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::new(false));
        let mut watched = Watched::new(server, activity.clone(), Duration::from_secs(5));
        use tokio::io::AsyncWriteExt;
        watched.write_all(&[0u8; 1024]).await.unwrap();
        let started = Instant::now();
        let err = watched.write_all(&[0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(activity.send_timed_out.load(Ordering::Relaxed));
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::new(false));
        let mut watched = Watched::new(server, activity.clone(), Duration::from_secs(5));
        watched.write_all(&[0u8; 1024]).await.unwrap();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            // Reads a little every 4 s: slow, but never blocked for 5 s at once.
            let mut buf = [0u8; 512];
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                client.read_exact(&mut buf).await.unwrap();
            }
            client
        });
        watched.write_all(&[0u8; 1024]).await.unwrap();
        assert!(!activity.send_timed_out.load(Ordering::Relaxed));
        assert_eq!(activity.write_blocked.load(Ordering::Relaxed), NEVER);
        drop(reader);
    }
}
