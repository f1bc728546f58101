//! `Activity`: what happened on one connection and when, written by its requests and
//! its stream, and which of its deadlines falls next — the watchdog's arithmetic.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::limits::Limits;

/// A timestamp field that holds no time.
const NEVER: u64 = u64::MAX;

/// How often the watchdog looks again while a request is in flight (requests end within
/// `server.deadline`).
const BUSY_RECHECK: Duration = Duration::from_millis(100);

/// What happened on one connection, and when (milliseconds after `started`).
///
/// Written by the service (`begin`, `InFlight` drop: on the connection task for HTTP/1,
/// on stream tasks for HTTP/2) and by `Watched` (reads and writes, on the connection
/// task); read by the watchdog, on the connection task.
pub(super) struct Activity {
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
pub(super) enum Next {
    /// Something is in flight; look again at this time.
    Busy(Instant),
    /// Close at this time unless something happens: the head did not arrive in time.
    Header(Instant),
    /// Close at this time unless something happens: the connection was idle too long.
    Idle(Instant),
}

impl Activity {
    pub(super) fn new(h2: bool) -> Activity {
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

    /// When the connection began: the first head's `header_timeout` runs from here.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    pub(super) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// A request head was read and its handler starts.
    pub(super) fn begin(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.head_started.store(NEVER, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub(super) fn read(&self) {
        if self.head_started.load(Ordering::Relaxed) == NEVER && !self.is_h2() {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    pub(super) fn write_blocked(&self) {
        self.write_blocked.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(super) fn write_resumed(&self) {
        self.write_blocked.store(NEVER, Ordering::Relaxed);
        self.write_resumed.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The stream began with the HTTP/2 preface (prior knowledge, no TLS).
    pub(super) fn saw_h2_preface(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// A write stayed blocked for `send_timeout`: the connection fails.
    pub(super) fn send_timed_out(&self) {
        self.send_timed_out.store(true, Ordering::Relaxed);
    }

    /// Whether the connection failed because its client stopped reading.
    pub(super) fn ended_by_send_timeout(&self) -> bool {
        self.send_timed_out.load(Ordering::Relaxed)
    }

    /// Whether a write is blocked now.
    #[cfg(test)]
    pub(super) fn write_is_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed) != NEVER
    }

    /// When the watchdog must act, given what happened so far.
    pub(super) fn next(&self, limits: &Limits, now: Instant) -> Next {
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
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_end.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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
}
