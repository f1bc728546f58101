//! Bounded waits: poll a check until it yields what the test waits for, and return it.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::{get, Transport};

/// How often a check is polled unless the wait says otherwise.
const POLL: Duration = Duration::from_millis(20);

/// What one poll of a check found: the value waited for, or not yet.
pub trait Outcome {
    type Value;
    /// `Err` holds what the check saw instead, for the failure message (`None`: nothing
    /// worth showing).
    fn done(self) -> Result<Self::Value, Option<String>>;
}

/// `true` when the condition holds.
impl Outcome for bool {
    type Value = ();
    fn done(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

/// `Some(value)` once it is there.
impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)` once it is there; `Err(what was seen)` until then, and the last one is in
/// the failure message.
impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// A bounded wait: at most `limit` long and `limit / every + 1` checks (unless `at_most`
/// says fewer), one every `every`. The first check runs at once, whatever the limit.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    limit: Duration,
    every: Duration,
    checks: Option<u32>,
}

impl Wait {
    /// A wait of at most `limit`, polling every 20 ms.
    pub fn up_to(limit: Duration) -> Wait {
        Wait {
            limit,
            every: POLL,
            checks: None,
        }
    }

    /// Polls every `every` instead: gently, when a check is costly for the machine.
    pub fn every(self, every: Duration) -> Wait {
        Wait { every, ..self }
    }

    /// Stops after `checks` checks even if time is left.
    pub fn at_most(self, checks: u32) -> Wait {
        Wait {
            checks: Some(checks),
            ..self
        }
    }

    /// Polls `check` until it yields its value, and returns it; fails the test, naming
    /// `what` and the last thing seen, when the wait is over first.
    pub async fn until<O: Outcome>(self, what: &str, mut check: impl AsyncFnMut() -> O) -> O::Value {
        let mut budget = Budget::new(self);
        loop {
            match check().await.done() {
                Ok(value) => return value,
                Err(seen) => budget.spend(what, seen),
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// As `until`, blocking the thread between checks: for tests without a runtime.
    pub fn until_blocking<O: Outcome>(self, what: &str, mut check: impl FnMut() -> O) -> O::Value {
        let mut budget = Budget::new(self);
        loop {
            match check().done() {
                Ok(value) => return value,
                Err(seen) => budget.spend(what, seen),
            }
            std::thread::sleep(self.every);
        }
    }
}

/// The time and checks a wait has left.
struct Budget {
    wait: Wait,
    started: Instant,
    checks: u32,
    max_checks: u32,
}

impl Budget {
    fn new(wait: Wait) -> Budget {
        // Rounded up, so that with a clock that moves, time runs out first.
        let by_time = wait.limit.as_nanos().div_ceil(wait.every.as_nanos().max(1)) + 1;
        let by_time = u32::try_from(by_time).unwrap_or(u32::MAX);
        Budget {
            wait,
            started: Instant::now(),
            checks: 0,
            max_checks: wait.checks.map_or(by_time, |checks| checks.min(by_time)),
        }
    }

    /// Counts one failed check; fails the test when time or checks are used up.
    fn spend(&mut self, what: &str, seen: Option<String>) {
        self.checks += 1;
        let elapsed = self.started.elapsed();
        if elapsed < self.wait.limit && self.checks < self.max_checks {
            return;
        }
        let seen = seen.map(|seen| format!(": {seen}")).unwrap_or_default();
        panic!(
            "timed out after {:?} ({elapsed:?}, {} checks) waiting for {what}{seen}",
            self.wait.limit, self.checks
        );
    }
}

/// Polls `check` every 20 ms until it yields its value (`true`, `Some(value)` or
/// `Ok(value)`), and returns that value; fails the test after `limit`.
pub async fn eventually<O: Outcome>(limit: Duration, what: &str, check: impl AsyncFnMut() -> O) -> O::Value {
    Wait::up_to(limit).until(what, check).await
}

/// Waits (bounded) until the proxy at `addr` serves `host` + `path` with a 200.
pub async fn until_served(addr: SocketAddr, host: &str, path: &str) {
    eventually(Duration::from_secs(10), "the document to be served", async || {
        get(addr, &Transport::Plain, host, path).await.status == StatusCode::OK
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_the_value_it_waited_for() {
        let mut checks = 0;
        let value = eventually(Duration::from_secs(5), "the third check", async || {
            checks += 1;
            (checks == 3).then_some(checks * 10)
        })
        .await;
        assert_eq!(value, 30);
    }

    #[test]
    #[should_panic(expected = "waiting for a condition that never holds: last seen 7")]
    fn a_wait_that_runs_out_fails_with_what_it_saw_last() {
        Wait::up_to(Duration::from_millis(50))
            .until_blocking("a condition that never holds", || Err::<(), _>("last seen 7"));
    }

    #[test]
    fn a_wait_is_bounded_in_checks_as_well_as_time() {
        let mut checks = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Wait::up_to(Duration::from_secs(60))
                .every(Duration::from_millis(1))
                .at_most(3)
                .until_blocking("nothing", || {
                    checks += 1;
                    false
                })
        }));
        assert!(outcome.is_err());
        assert_eq!(checks, 3);
    }
}
