//! `Plan`: one certificate to keep — its names, cache file and current certificate — and
//! when to order it next: renewal when due, backoff after failures, kept across restarts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::model::timestamp;
use crate::tls::acme::cache_dir::{self, RetryState};
use crate::tls::acme::status::CertRecord;
use crate::tls::resolver::ServerCert;

/// First retry after a failed order; doubles up to `RETRY_MAX`. Five failed validations
/// per name per hour is Let's Encrypt's limit: 0, 2, 6, 14, 30 minutes stays within it.
const RETRY_MIN: Duration = Duration::from_secs(120);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(3600);

/// When a certificate is due for renewal: `renew_before` its expiry, or by default when
/// a third of its lifetime remains. Never before half its lifetime: a `renew_before`
/// longer than what the CA issues would otherwise order again and again.
pub fn renew_at(cert: &ServerCert, renew_before: Option<Duration>) -> SystemTime {
    let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
    let before = renew_before.unwrap_or(lifetime / 3).min(lifetime / 2);
    timestamp::sub(cert.not_after, before)
}

/// Delay before the next attempt after `failures` consecutive failed orders.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_MIN.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// One certificate to keep: its names and where it is cached.
pub(super) struct Plan {
    pub(super) names: Vec<String>,
    pub(super) file: PathBuf,
    pub(super) current: Option<ServerCert>,
    /// Also the schedule: `next_attempt` is when to order next (renewal or retry).
    pub(super) record: CertRecord,
}

impl Plan {
    /// A plan with no certificate yet, cached in `dir`, due at `now`.
    pub(super) fn new(names: Vec<String>, dir: &Path, now: SystemTime) -> Plan {
        Plan {
            file: cache_dir::cache_file(dir, &names),
            record: CertRecord {
                names: names.clone(),
                next_attempt: Some(now),
                ..CertRecord::default()
            },
            names,
            current: None,
        }
    }

    pub(super) fn install(&mut self, cert: ServerCert, renew_before: Option<Duration>) {
        let due = renew_at(&cert, renew_before);
        let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
        if let Some(before) = renew_before.filter(|b| *b > lifetime / 2) {
            warn!(
                renew_before = %humantime::format_duration(before),
                lifetime = %humantime::format_duration(lifetime),
                "server.tls.acme.renew_before is more than half the certificate's lifetime; renewing at half"
            );
        }
        self.record.not_after = Some(cert.not_after);
        self.record.renew_at = Some(due);
        self.record.next_attempt = Some(due);
        self.current = Some(cert);
    }

    /// When to order next.
    pub(super) fn next(&self) -> SystemTime {
        self.record.next_attempt.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    pub(super) fn retry_file(&self) -> PathBuf {
        cache_dir::retry_file(&self.file)
    }

    /// Failed orders before a restart still count: the next attempt waits as it would have,
    /// but never longer than the longest backoff from `now` — whatever the file says, a
    /// certificate is ordered again within `RETRY_MAX`.
    pub(super) fn restore_retry_state(&mut self, now: SystemTime) {
        let Some(state) = cache_dir::read_retry_state(&self.retry_file()) else {
            return;
        };
        let next = timestamp::from_unix_seconds(state.next_attempt_unix).min(timestamp::add(now, RETRY_MAX));
        self.record.consecutive_failures = state.consecutive_failures;
        self.record.last_attempt = Some(timestamp::from_unix_seconds(state.last_attempt_unix).min(now));
        self.record.last_error = Some(state.last_error);
        if next > self.next() {
            self.record.next_attempt = Some(next);
        }
    }

    pub(super) fn save_retry_state(&self, attempt: SystemTime, reason: &str) {
        let state = RetryState {
            consecutive_failures: self.record.consecutive_failures,
            last_attempt_unix: timestamp::unix_seconds(attempt),
            next_attempt_unix: timestamp::unix_seconds(self.next()),
            last_error: reason.to_owned(),
        };
        cache_dir::write_retry_state(&self.retry_file(), &state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_two_minutes_to_an_hour() {
        let minutes: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left_or_renew_before() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86400);
        let cert = crate::tls::resolver::test_cert(&["a.example"], start, start + 90 * day);
        assert_eq!(renew_at(&cert, None), start + 60 * day);
        assert_eq!(renew_at(&cert, Some(7 * day)), start + 83 * day);
        assert_eq!(
            renew_at(&cert, Some(100_000 * day)),
            start + 45 * day,
            "at most half the lifetime"
        );
    }

    /// A plan with no certificate, due at `now`, cached in `dir`.
    fn plan(dir: &Path, now: SystemTime) -> Plan {
        Plan::new(vec!["a.example".to_owned()], dir, now)
    }

    #[test]
    fn a_retry_record_is_kept_but_never_waits_past_the_longest_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut plan = plan(dir.path(), now);
        plan.record.consecutive_failures = 3;
        plan.record.next_attempt = Some(now + Duration::from_secs(480));
        plan.save_retry_state(now, "refused");
        let mut restarted = self::plan(dir.path(), now + Duration::from_secs(60));
        restarted.restore_retry_state(now + Duration::from_secs(60));
        assert_eq!(restarted.record.next_attempt, Some(now + Duration::from_secs(480)));
        assert_eq!(restarted.record.last_attempt, Some(now));
        assert_eq!(restarted.record.consecutive_failures, 3);
        assert_eq!(restarted.record.last_error.as_deref(), Some("refused"));

        // The far future (a corrupt file, a clock that was years ahead) waits RETRY_MAX.
        let text = format!(
            r#"{{"consecutive_failures":1,"last_attempt_unix":{0},"next_attempt_unix":{0},"last_error":"x"}}"#,
            u64::MAX
        );
        std::fs::write(plan.retry_file(), text).unwrap();
        let mut restarted = self::plan(dir.path(), now);
        restarted.restore_retry_state(now);
        assert_eq!(restarted.record.next_attempt, Some(now + RETRY_MAX));
        assert_eq!(restarted.record.last_attempt, Some(now));
    }

    fn raw_seconds() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just(u64::MAX.to_string()),
            // Year 10000 and beyond.
            (crate::model::timestamp::MAX_UNIX_SECONDS..=u64::MAX).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[0-9]{20,60}",
            Just("null".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn any_retry_record_restores_without_panicking_and_within_bounds(
            next in raw_seconds(),
            last in raw_seconds(),
            failures in proptest::prelude::any::<u32>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut plan = plan(dir.path(), now);
            let text = format!(
                r#"{{"consecutive_failures":{failures},"last_attempt_unix":{last},"next_attempt_unix":{next},"last_error":"x"}}"#
            );
            std::fs::write(plan.retry_file(), text).unwrap();
            plan.restore_retry_state(now);
            let next_attempt = plan.record.next_attempt.unwrap();
            proptest::prop_assert!(now <= next_attempt && next_attempt <= now + RETRY_MAX);
            proptest::prop_assert!(plan.record.last_attempt.is_none_or(|t| t <= now));
            for t in [plan.record.next_attempt, plan.record.last_attempt].into_iter().flatten() {
                let text = crate::model::timestamp::rfc3339_seconds(t).to_string();
                proptest::prop_assert!(humantime::parse_rfc3339(&text).is_ok());
            }
            // The record written back from this state is readable again.
            plan.save_retry_state(now, "again");
            let mut again = self::plan(dir.path(), now);
            again.restore_retry_state(now);
            proptest::prop_assert_eq!(again.record.last_error.as_deref(), Some("again"));
        }
    }
}
