//! `KeyBoard`: each issuer's keys and their history, written by its key set refresher and
//! read by the admin listener without a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::model::keys::KeySummary;

/// One summary per issuer, indexed like the config's issuers.
///
/// Concurrency contract: each summary is replaced whole, only by its issuer's key set
/// refresher (and by its restore at start, before any listener runs); `/readyz` and
/// `/metrics` load it without locking.
pub struct KeyBoard {
    issuers: Vec<ArcSwap<KeySummary>>,
}

impl KeyBoard {
    pub fn new(issuers: usize) -> KeyBoard {
        KeyBoard {
            issuers: (0..issuers)
                .map(|_| ArcSwap::from_pointee(KeySummary::default()))
                .collect(),
        }
    }

    pub fn get(&self, issuer: usize) -> Arc<KeySummary> {
        self.issuers[issuer].load_full()
    }

    pub fn set(&self, issuer: usize, summary: KeySummary) {
        self.issuers[issuer].store(Arc::new(summary));
    }
}
