//! `HealthBoard`: each document's fetch outcomes, written by its refresher, read by `/readyz`.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::model::DocId;

/// What the refresher of one document last saw.
#[derive(Clone, Debug, Default)]
pub struct FetchRecord {
    pub last_success: Option<SystemTime>,
    pub last_attempt: Option<SystemTime>,
    /// The reason of the last failure, until a success clears it.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub consecutive_failures: u64,
    pub failures_total: u64,
    /// Discovery only: the `issuer` the upstream states, while it differs from the
    /// configured `public_url` (relying parties then refuse every token).
    pub issuer_mismatch: Option<String>,
}

/// One record per document, indexed like the store.
///
/// Concurrency contract: each record is written only by its document's refresher and
/// read by the admin listener; the lock is never held across an await, nor taken on the
/// request path.
pub struct HealthBoard {
    records: Vec<Mutex<FetchRecord>>,
}

/// Whether a recorded outcome changed the document's state, so it deserves a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// First failure, or a failure for a different reason than the previous one.
    Failing,
    /// A success after failures.
    Recovered,
}

impl HealthBoard {
    pub fn new(issuers: usize) -> HealthBoard {
        HealthBoard {
            records: (0..issuers * 2).map(|_| Mutex::new(FetchRecord::default())).collect(),
        }
    }

    fn record(&self, id: DocId) -> std::sync::MutexGuard<'_, FetchRecord> {
        self.records[id.slot()].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: DocId) -> FetchRecord {
        self.record(id).clone()
    }

    pub fn success(&self, id: DocId, now: SystemTime) -> Transition {
        let mut record = self.record(id);
        let transition = if record.last_error.is_some() {
            Transition::Recovered
        } else {
            Transition::Unchanged
        };
        record.last_success = Some(now);
        record.last_attempt = Some(now);
        record.last_error = None;
        record.consecutive_failures = 0;
        transition
    }

    /// Records the upstream's `issuer` when it differs from `public_url` (`None` when it
    /// matches); true when that changed, so it deserves a log line.
    pub fn issuer_mismatch(&self, id: DocId, upstream_issuer: Option<String>) -> bool {
        let mut record = self.record(id);
        let changed = record.issuer_mismatch != upstream_issuer;
        record.issuer_mismatch = upstream_issuer;
        changed
    }

    pub fn failure(&self, id: DocId, reason: String, now: SystemTime) -> Transition {
        let mut record = self.record(id);
        let transition = if record.last_error.as_deref() == Some(reason.as_str()) {
            Transition::Unchanged
        } else {
            Transition::Failing
        };
        record.last_attempt = Some(now);
        record.last_error = Some(reason);
        record.last_error_at = Some(now);
        record.consecutive_failures += 1;
        record.failures_total += 1;
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once_per_state_change() {
        let board = HealthBoard::new(1);
        let id = DocId::jwks(0);
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(board.success(id, t), Transition::Unchanged);
        assert_eq!(board.failure(id, "timeout".into(), t), Transition::Failing);
        assert_eq!(board.failure(id, "timeout".into(), t), Transition::Unchanged);
        assert_eq!(board.failure(id, "status 500".into(), t), Transition::Failing);
        assert_eq!(board.get(id).consecutive_failures, 3);
        assert_eq!(board.success(id, t), Transition::Recovered);
        let record = board.get(id);
        assert_eq!(record.failures_total, 3);
        assert_eq!(record.consecutive_failures, 0);
        assert!(record.last_error.is_none());
        assert_eq!(board.get(DocId::discovery(0)).failures_total, 0);
    }
}
