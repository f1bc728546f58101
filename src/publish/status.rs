//! `PublishBoard`: each sink's state per issuer, written by its publisher, read by `/readyz` and `/metrics`.

use std::sync::Mutex;
use std::time::SystemTime;

/// What the publisher of one issuer to one sink last saw.
#[derive(Clone, Debug, Default)]
pub struct PublishRecord {
    /// When the sink last held every current document (written or found unchanged).
    pub last_success: Option<SystemTime>,
    /// The reason of the last failed attempt, until a success clears it.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub consecutive_failures: u64,
}

/// One (sink, issuer) pair of the config.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The sink's url as configured.
    pub sink: String,
    pub issuer: usize,
}

/// One record per (sink, issuer) pair, in config order: sinks, then each sink's issuers.
///
/// Concurrency contract: each record is written only by its pair's publisher task and
/// read by the admin listener; the lock is never held across an await.
#[derive(Debug)]
pub struct PublishBoard {
    pairs: Vec<Pair>,
    records: Vec<Mutex<PublishRecord>>,
}

impl PublishBoard {
    pub fn new(pairs: Vec<Pair>) -> PublishBoard {
        PublishBoard {
            records: pairs.iter().map(|_| Mutex::new(PublishRecord::default())).collect(),
            pairs,
        }
    }

    fn record(&self, pair: usize) -> std::sync::MutexGuard<'_, PublishRecord> {
        self.records[pair].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    pub fn get(&self, pair: usize) -> PublishRecord {
        self.record(pair).clone()
    }

    /// The pairs of one issuer, with their records, in sink order.
    pub fn of_issuer(&self, issuer: usize) -> Vec<(&Pair, PublishRecord)> {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.issuer == issuer)
            .map(|(i, p)| (p, self.get(i)))
            .collect()
    }

    /// Sinks (counted once each) that some issuer's last attempt failed on.
    pub fn failing_sinks(&self) -> usize {
        let mut failing: Vec<&str> = self
            .pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| self.get(*i).consecutive_failures > 0)
            .map(|(_, p)| p.sink.as_str())
            .collect();
        failing.sort_unstable();
        failing.dedup();
        failing.len()
    }

    pub fn success(&self, pair: usize, now: SystemTime) {
        let mut record = self.record(pair);
        record.last_success = Some(now);
        record.last_error = None;
        record.consecutive_failures = 0;
    }

    /// Records a failed attempt; returns how many in a row have failed.
    pub fn failure(&self, pair: usize, reason: String, now: SystemTime) -> u64 {
        let mut record = self.record(pair);
        record.last_error = Some(reason);
        record.last_error_at = Some(now);
        record.consecutive_failures += 1;
        record.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_until_a_success_and_sinks_count_once() {
        let pair = |sink: &str, issuer| Pair {
            sink: sink.into(),
            issuer,
        };
        let board = PublishBoard::new(vec![pair("s3://a", 0), pair("s3://a", 1), pair("gs://b", 0)]);
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(board.failing_sinks(), 0);
        assert_eq!(board.failure(0, "refused".into(), t), 1);
        assert_eq!(board.failure(0, "refused".into(), t), 2);
        board.failure(1, "refused".into(), t);
        assert_eq!(board.failing_sinks(), 1);
        board.failure(2, "403".into(), t);
        assert_eq!(board.failing_sinks(), 2);
        board.success(0, t);
        let record = board.get(0);
        assert_eq!((record.consecutive_failures, record.last_error), (0, None));
        assert_eq!(record.last_error_at, Some(t));
        let of_first: Vec<&str> = board.of_issuer(0).iter().map(|(p, _)| p.sink.as_str()).collect();
        assert_eq!(of_first, ["s3://a", "gs://b"]);
    }
}
