//! `HealthBoard`: each document's fetch outcomes, written by its refresher, read by `/readyz`
//! and the status page.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

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

/// One fetch's end, for the status page's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub at: SystemTime,
    pub ok: bool,
}

/// How many outcomes each document keeps for its timeline: one a minute covers the hour
/// the page draws at the default refresh period; faster periods (or a failure's backoff)
/// show a shorter span. Bounded, so memory grows with the documents only.
pub const RECENT_MARKS: usize = 60;

/// The span the timeline draws at most.
pub const TIMELINE: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Entry {
    record: FetchRecord,
    /// The last `RECENT_MARKS` outcomes, oldest first.
    recent: VecDeque<Mark>,
}

impl Entry {
    fn mark(&mut self, at: SystemTime, ok: bool) {
        if self.recent.len() == RECENT_MARKS {
            self.recent.pop_front();
        }
        self.recent.push_back(Mark { at, ok });
    }
}

/// One record per document, indexed like the store.
///
/// Concurrency contract: each record is written only by its document's refresher and
/// read by the admin listener; the lock is never held across an await, nor taken on the
/// request path.
pub struct HealthBoard {
    records: Vec<Mutex<Entry>>,
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
            records: (0..issuers * 2).map(|_| Mutex::new(Entry::default())).collect(),
        }
    }

    fn entry(&self, id: DocId) -> std::sync::MutexGuard<'_, Entry> {
        self.records[id.slot()].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: DocId) -> FetchRecord {
        self.entry(id).record.clone()
    }

    /// The outcomes kept for the timeline that ended after `since`, oldest first.
    pub fn recent(&self, id: DocId, since: SystemTime) -> Vec<Mark> {
        self.entry(id)
            .recent
            .iter()
            .filter(|m| m.at >= since)
            .copied()
            .collect()
    }

    pub fn success(&self, id: DocId, now: SystemTime) -> Transition {
        let mut entry = self.entry(id);
        entry.mark(now, true);
        let record = &mut entry.record;
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
        let record = &mut self.entry(id).record;
        let changed = record.issuer_mismatch != upstream_issuer;
        record.issuer_mismatch = upstream_issuer;
        changed
    }

    pub fn failure(&self, id: DocId, reason: String, now: SystemTime) -> Transition {
        let mut entry = self.entry(id);
        entry.mark(now, false);
        let record = &mut entry.record;
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
        let marks: Vec<_> = board.recent(id, t).iter().map(|m| m.ok).collect();
        assert_eq!(marks, [true, false, false, false, true]);
    }

    #[test]
    fn the_timeline_keeps_the_latest_outcomes_only() {
        let board = HealthBoard::new(1);
        let id = DocId::discovery(0);
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        for s in 0..(RECENT_MARKS as u64 + 10) {
            board.failure(id, "timeout".into(), at(s));
        }
        let marks = board.recent(id, at(0));
        assert_eq!(marks.len(), RECENT_MARKS);
        assert_eq!(marks[0].at, at(10));
        assert_eq!(board.recent(id, at(65)).len(), 5);
    }
}
