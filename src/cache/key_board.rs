//! `KeyBoard`: each issuer's keys and their history, written by its key set refresher and
//! read by the admin listener without a lock; and the issuer's latest key changes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::model::key_event::KeyChange;
use crate::model::keys::KeySummary;

/// How many key changes each issuer keeps for the status page: a few rotations' worth.
pub const RECENT_CHANGES: usize = 16;

/// One summary per issuer, indexed like the config's issuers.
///
/// Concurrency contract: each summary is replaced whole, only by its issuer's key set
/// refresher (and by its restore at start, before any listener runs); `/readyz` and
/// `/metrics` load it without locking.
pub struct KeyBoard {
    issuers: Vec<ArcSwap<KeySummary>>,
    /// The last `RECENT_CHANGES` changes per issuer, oldest first; same writer, locked
    /// briefly by it and by the admin listener, never on the request path.
    changes: Vec<Mutex<VecDeque<KeyChange>>>,
}

impl KeyBoard {
    pub fn new(issuers: usize) -> KeyBoard {
        KeyBoard {
            issuers: (0..issuers)
                .map(|_| ArcSwap::from_pointee(KeySummary::default()))
                .collect(),
            changes: (0..issuers).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn get(&self, issuer: usize) -> Arc<KeySummary> {
        self.issuers[issuer].load_full()
    }

    pub fn set(&self, issuer: usize, summary: KeySummary) {
        self.issuers[issuer].store(Arc::new(summary));
    }

    /// Keeps `changes` as the issuer's latest, dropping the oldest beyond `RECENT_CHANGES`.
    pub fn note(&self, issuer: usize, changes: impl IntoIterator<Item = KeyChange>) {
        let mut kept = self.changes[issuer].lock().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            if kept.len() == RECENT_CHANGES {
                kept.pop_front();
            }
            kept.push_back(change);
        }
    }

    /// The issuer's latest key changes, newest first.
    pub fn changes(&self, issuer: usize) -> Vec<KeyChange> {
        let kept = self.changes[issuer].lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key_event::KeyEventKind;
    use std::time::{Duration, SystemTime};

    #[test]
    fn only_the_latest_changes_are_kept_newest_first() {
        let board = KeyBoard::new(2);
        let change = |n: u64| KeyChange {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(n),
            kind: KeyEventKind::Added,
            kid: Some(format!("k{n}")),
        };
        board.note(1, (0..RECENT_CHANGES as u64 + 3).map(change));
        let kept = board.changes(1);
        assert_eq!(kept.len(), RECENT_CHANGES);
        assert_eq!(kept[0], change(RECENT_CHANGES as u64 + 2));
        assert_eq!(kept.last().unwrap().kid.as_deref(), Some("k3"));
        assert!(board.changes(0).is_empty());
    }
}
