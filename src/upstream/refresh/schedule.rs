//! When a refresher fetches (or a publisher writes) next: the jittered period after a
//! success, exponential backoff after a failure.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// First retry delay after a failed fetch or upload; doubles up to the period.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// 90–100 % of `period`, so that replicas, documents and publishers that failed together
/// (a sink outage) drift apart without ever waiting longer than the period itself.
pub fn jitter(period: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let permille = 900 + (random % 101);
    period * permille as u32 / 1000
}

/// Exponential backoff from `FIRST_RETRY`, capped at `cap` (the refresh period).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY.min(cap),
            cap,
        }
    }

    pub fn reset(&mut self) {
        self.next = FIRST_RETRY.min(self.cap);
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        jitter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents started in the same instant (a restart) must not refresh in step: each
    /// draw is independent, and they cover the whole 90–100 % window.
    #[test]
    fn jitter_draws_spread_over_the_whole_window() {
        let period = Duration::from_secs(60);
        let draws: Vec<Duration> = (0..2000).map(|_| jitter(period)).collect();
        assert!(draws.iter().all(|d| *d >= period * 9 / 10 && *d <= period));
        let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(*hi - *lo >= period / 12, "draws span only {:?}", *hi - *lo);
        let mut distinct = draws.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 50, "only {} distinct delays", distinct.len());
    }

    #[test]
    fn delays_double_up_to_the_cap_within_their_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let bounds = [1, 2, 4, 5, 5].map(Duration::from_secs);
        for bound in bounds {
            let delay = backoff.next_delay();
            assert!(delay <= bound && delay >= bound * 9 / 10, "{delay:?} for {bound:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_RETRY);
    }
}
