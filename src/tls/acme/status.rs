//! What `/readyz` shows of ACME: each certificate's record and state, shared with the
//! admin listener.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::AcmeChallenge;

/// Where one certificate stands, as `/readyz` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Never obtained: HTTPS cannot serve these names.
    Missing,
    /// Past its `not_after`: HTTPS cannot serve these names.
    Expired,
    /// Served, and not yet due for renewal.
    Valid,
    /// Due for renewal, no failed order yet.
    Renewing,
    /// Due for renewal, and the CA refused or is unreachable.
    RenewalFailing,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Missing => "missing",
            CertState::Expired => "expired",
            CertState::Valid => "valid",
            CertState::Renewing => "renewing",
            CertState::RenewalFailing => "renewal_failing",
        }
    }

    /// Whether HTTPS has a certificate it can serve for these names.
    pub fn serves(self) -> bool {
        !matches!(self, CertState::Missing | CertState::Expired)
    }
}

/// One certificate's state, as `/readyz` shows it.
#[derive(Clone, Debug, Default)]
pub struct CertRecord {
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
    pub renew_at: Option<SystemTime>,
    pub last_attempt: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<SystemTime>,
}

impl CertRecord {
    /// Where the certificate stands at `now`: due means `renew_at` has passed.
    pub fn state(&self, now: SystemTime) -> CertState {
        match (self.not_after, self.renew_at) {
            (None, _) => CertState::Missing,
            (Some(not_after), _) if not_after <= now => CertState::Expired,
            (_, Some(renew_at)) if renew_at <= now && self.consecutive_failures > 0 => CertState::RenewalFailing,
            (_, Some(renew_at)) if renew_at <= now => CertState::Renewing,
            _ => CertState::Valid,
        }
    }
}

/// The ACME state shared with the admin listener.
#[derive(Debug)]
pub struct AcmeStatus {
    pub directory: String,
    pub challenge: AcmeChallenge,
    /// Written by the `AcmeManager` after each change, one record per certificate it
    /// keeps (in its order); read by `/readyz`.
    records: Mutex<Vec<CertRecord>>,
}

impl AcmeStatus {
    pub(super) fn new(directory: String, challenge: AcmeChallenge, records: Vec<CertRecord>) -> AcmeStatus {
        AcmeStatus {
            directory,
            challenge,
            records: Mutex::new(records),
        }
    }

    pub fn records(&self) -> Vec<CertRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set(&self, index: usize, record: CertRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner())[index] = record;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn record_states_say_what_an_operator_must_know() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let mut record = CertRecord::default();
        assert_eq!(record.state(now).as_str(), "missing");
        assert!(!record.state(now).serves());
        record.not_after = Some(now + 10 * hour);
        record.renew_at = Some(now + hour);
        assert_eq!(record.state(now).as_str(), "valid");
        record.renew_at = Some(now - hour);
        assert_eq!(record.state(now).as_str(), "renewing");
        record.consecutive_failures = 1;
        assert_eq!(record.state(now).as_str(), "renewal_failing");
        assert!(record.state(now).serves());
        record.not_after = Some(now - hour);
        assert_eq!(record.state(now).as_str(), "expired");
        assert!(!record.state(now).serves());
    }
}
