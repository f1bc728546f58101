//! Revalidation on demand: a request that finds an aging key set wakes its refresher, at most once per `cache.revalidate_after`.
//!
//! Relying parties re-fetch the key set when a token names a `kid` they do not know, so
//! a key just added upstream should reach them in seconds, not at the next period. A
//! request never fetches and never waits: it only wins (or loses) a compare-and-swap on
//! a timestamp and, when it wins, pokes the key set's refresher, which fetches in the
//! background. Only key sets are revalidated: rotation changes the key set, not the
//! discovery document, which keeps its period (and the upstream half the load).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::document::DocKind;
use crate::model::DocId;

/// The end of one fetch attempt, as the gate recorded it (see `RevalidationGate::attempted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt(u64);

/// The limiter of one document: decides which requests start a revalidation.
///
/// It keeps one timestamp, `last`: the later of the last revalidation granted to a
/// request and the end of the refresher's last fetch attempt. A request is granted a
/// revalidation only when its copy is at least `interval` old and `last` is at least
/// `interval` ago, and only one request can move `last` forward. So revalidations start
/// at most once per `interval`, and never within `interval` after any fetch ended —
/// whatever the traffic, and whether that fetch succeeded or failed.
///
/// Concurrency contract: requests write `last` by compare-and-swap in `admit`; the
/// document's refresher raises it in `attempted`; it never moves backwards. No lock.
#[derive(Debug)]
pub struct RevalidationGate {
    /// Zero: revalidation is off and `admit` is always false.
    interval_ms: u64,
    /// Times are kept as milliseconds since this instant.
    origin: Instant,
    last: AtomicU64,
}

impl RevalidationGate {
    /// A gate for `interval` (zero: off) that counts `origin` as the end of a fetch.
    pub fn new(interval: Duration, origin: Instant) -> RevalidationGate {
        RevalidationGate {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            origin,
            last: AtomicU64::new(0),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the request at `now`, which found a copy `copy_age` old, starts a
    /// revalidation. A `now` earlier than the last grant or fetch is never granted.
    pub fn admit(&self, copy_age: Duration, now: Instant) -> bool {
        if self.interval_ms == 0 || copy_age.as_millis() < u128::from(self.interval_ms) {
            return false;
        }
        let now = self.millis(now);
        let last = self.last.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.interval_ms {
            return false;
        }
        // Of all the requests that saw the same `last`, exactly one wins.
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Records that a fetch attempt ended at `now`: no request is granted a revalidation
    /// for another interval, since that fetch already answers it.
    pub fn attempted(&self, now: Instant) -> Attempt {
        let now = self.millis(now);
        self.last.fetch_max(now, Ordering::Relaxed);
        Attempt(now)
    }

    /// Whether a request was granted a revalidation after `attempt` ended. A poke that
    /// arrived while that fetch ran was granted before it ended, and is answered by it.
    pub fn granted_since(&self, attempt: Attempt) -> bool {
        self.last.load(Ordering::Relaxed) > attempt.0
    }
}

/// A key set's gate and the poke its refresher waits on.
#[derive(Debug)]
struct KeySet {
    gate: RevalidationGate,
    poke: Notify,
}

/// The revalidation limiters of every key set, shared by the request path (which asks)
/// and the key set refreshers (which answer), indexed by issuer.
#[derive(Debug)]
pub struct Revalidations {
    key_sets: Vec<KeySet>,
}

impl Revalidations {
    /// One limiter per issuer's key set; `interval` zero turns revalidation off.
    pub fn new(issuers: usize, interval: Duration, origin: Instant) -> Revalidations {
        Revalidations {
            key_sets: (0..issuers)
                .map(|_| KeySet {
                    gate: RevalidationGate::new(interval, origin),
                    poke: Notify::new(),
                })
                .collect(),
        }
    }

    /// Called by every request that read a copy of `id` fetched at `fetched_at`, at
    /// `wall` (the time it is judged at) and `now`. Pokes the refresher when the gate
    /// admits it; returns whether it did. Never waits, never allocates.
    pub fn consider(&self, id: DocId, fetched_at: SystemTime, wall: SystemTime, now: Instant) -> bool {
        if id.kind != DocKind::Jwks {
            return false;
        }
        let Some(key_set) = self.key_sets.get(id.issuer) else {
            return false;
        };
        // A clock that went backwards makes the copy look new: no revalidation.
        let age = wall.duration_since(fetched_at).unwrap_or_default();
        if !key_set.gate.admit(age, now) {
            return false;
        }
        // Stores a permit when the refresher is busy fetching; `granted_since` tells it
        // afterwards whether that fetch already answered the poke.
        key_set.poke.notify_one();
        true
    }

    /// The limiter of one issuer's key set.
    pub fn gate(&self, issuer: usize) -> &RevalidationGate {
        &self.key_sets[issuer].gate
    }

    /// Completes when a request poked this issuer's key set refresher.
    pub async fn poked(&self, issuer: usize) {
        self.key_sets[issuer].poke.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: Duration = Duration::from_secs(5);

    fn at(origin: Instant, millis: u64) -> Instant {
        origin + Duration::from_millis(millis)
    }

    #[test]
    fn a_fresh_copy_is_never_revalidated() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(FIVE, origin);
        let late = at(origin, 60_000);
        assert!(!gate.admit(Duration::ZERO, late));
        assert!(!gate.admit(Duration::from_millis(4_999), late));
        assert!(gate.admit(FIVE, late));
    }

    #[test]
    fn at_most_one_grant_per_interval_whatever_the_traffic() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(FIVE, origin);
        let old = Duration::from_secs(3600);
        // The gate counts its creation as a fetch: nothing before one interval.
        assert!(!gate.admit(old, at(origin, 4_999)));
        // One request per millisecond for a minute: the copy stays old (the upstream
        // fails, say), so only the limiter holds the line.
        let granted: Vec<u64> = (0..60_000).filter(|ms| gate.admit(old, at(origin, *ms))).collect();
        assert_eq!(
            granted,
            [5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000, 55_000]
        );
    }

    #[test]
    fn a_fetch_that_ends_pushes_the_next_grant_back() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(FIVE, origin);
        let old = Duration::from_secs(3600);
        // A periodic or retried fetch ended at 7 s: it answers requests until 12 s.
        gate.attempted(at(origin, 7_000));
        assert!(!gate.admit(old, at(origin, 8_000)));
        assert!(!gate.admit(old, at(origin, 11_999)));
        assert!(gate.admit(old, at(origin, 12_000)));
        assert!(!gate.admit(old, at(origin, 16_999)));
    }

    #[test]
    fn a_poke_during_a_fetch_is_answered_by_that_fetch() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(FIVE, origin);
        let old = Duration::from_secs(3600);
        let before = gate.attempted(at(origin, 1_000));
        // Granted while the refresher is fetching (from 5.5 s to 6.5 s).
        assert!(gate.admit(old, at(origin, 6_000)));
        assert!(gate.granted_since(before));
        let fetched = gate.attempted(at(origin, 6_500));
        assert!(!gate.granted_since(fetched), "the fetch already answered it");
        // The next grant comes one interval after that fetch, and is a new poke.
        assert!(!gate.admit(old, at(origin, 11_000)));
        assert!(gate.admit(old, at(origin, 11_500)));
        assert!(gate.granted_since(fetched));
    }

    #[test]
    fn time_never_moves_the_gate_backwards() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(FIVE, origin);
        let old = Duration::from_secs(3600);
        assert!(gate.admit(old, at(origin, 20_000)));
        // A request that started earlier but asks later, and a fetch end stamped earlier
        // than the grant: neither reopens the gate.
        assert!(!gate.admit(old, at(origin, 10_000)));
        let attempt = gate.attempted(at(origin, 19_000));
        assert!(gate.granted_since(attempt), "the later grant still counts");
        assert!(!gate.admit(old, at(origin, 24_999)));
        assert!(gate.admit(old, at(origin, 25_000)));
        // Before the origin counts as the origin.
        assert!(!gate.admit(old, origin.checked_sub(Duration::from_secs(1)).unwrap_or(origin)));
    }

    #[test]
    fn zero_turns_it_off() {
        let origin = Instant::now();
        let gate = RevalidationGate::new(Duration::ZERO, origin);
        assert!(!gate.admit(Duration::from_secs(3600), at(origin, 3_600_000)));
    }

    #[test]
    fn only_key_sets_are_revalidated() {
        let origin = Instant::now();
        let revalidations = Revalidations::new(2, FIVE, origin);
        let fetched_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let wall = fetched_at + Duration::from_secs(60);
        let now = at(origin, 60_000);
        assert!(!revalidations.consider(DocId::discovery(1), fetched_at, wall, now));
        assert!(
            !revalidations.consider(DocId::jwks(7), fetched_at, wall, now),
            "no such issuer"
        );
        assert!(revalidations.consider(DocId::jwks(1), fetched_at, wall, now));
        assert!(
            !revalidations.consider(DocId::jwks(1), fetched_at, wall, now),
            "once per interval"
        );
        assert!(
            revalidations.consider(DocId::jwks(0), fetched_at, wall, now),
            "each key set has its own limiter"
        );
        // A wall clock behind the copy's fetch time makes the copy look new.
        assert!(!revalidations.consider(DocId::jwks(0), wall, fetched_at, at(origin, 120_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_pokes_the_refresher_once() {
        let origin = Instant::now();
        let revalidations = std::sync::Arc::new(Revalidations::new(1, FIVE, origin));
        let fetched_at = SystemTime::UNIX_EPOCH;
        let wall = fetched_at + Duration::from_secs(60);
        let waiter = {
            let revalidations = revalidations.clone();
            tokio::spawn(async move { revalidations.poked(0).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let requests = (0..1000)
            .filter(|_| revalidations.consider(DocId::jwks(0), fetched_at, wall, at(origin, 10_000)))
            .count();
        assert_eq!(requests, 1);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the refresher is woken")
            .unwrap();
    }
}
