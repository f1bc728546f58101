//! `Backoff`: when a publisher tries a failing sink again: doubling, jittered, capped.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// First retry delay after a failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// 80–100 % of `period`: publishers that failed together (a sink outage) spread out
/// when they try again, and never wait longer than the period.
pub fn jitter(period: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let permille = 800 + (random % 201);
    period * permille as u32 / 1000
}

/// Exponential backoff from `FIRST_RETRY`, capped at `cap`.
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

    #[test]
    fn delays_double_up_to_the_cap_within_their_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(5));
        let bounds = [1, 2, 4, 5, 5].map(Duration::from_secs);
        for bound in bounds {
            let delay = backoff.next_delay();
            assert!(delay <= bound && delay >= bound * 8 / 10, "{delay:?} for {bound:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_RETRY);
    }
}
