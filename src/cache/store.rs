//! `DocumentStore`: the last good copy of every document, read by requests, written by refreshers.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::document::Document;
use crate::model::DocId;

/// One document's slot.
struct Slot {
    /// The current copy: replaced whole by the refresher, read without locking by
    /// every request.
    current: ArcSwapOption<Document>,
    /// Bumped after every replacement, to wake whoever waits for a copy.
    changed: watch::Sender<u64>,
}

/// One slot per configured document. The set of documents is fixed by the config, so the
/// store is a vector, not a map, and needs no eviction.
///
/// Concurrency contract: each slot has exactly one writer, the refresher task of that
/// document, which replaces the copy only with a validated one. Requests only read, and
/// take no lock to do so. A request that finds no copy waits on the slot's change signal
/// for the refresher's fetch, so any number of concurrent cold misses share that one
/// upstream fetch.
pub struct DocumentStore {
    slots: Vec<Slot>,
}

impl DocumentStore {
    pub fn new(issuers: usize) -> DocumentStore {
        DocumentStore {
            slots: (0..issuers * 2)
                .map(|_| Slot {
                    current: ArcSwapOption::empty(),
                    changed: watch::Sender::new(0),
                })
                .collect(),
        }
    }

    /// The current copy, if any.
    pub fn get(&self, id: DocId) -> Option<Arc<Document>> {
        self.slots[id.slot()].current.load_full()
    }

    /// The current copy, or the first one stored before `deadline`.
    pub async fn wait(&self, id: DocId, deadline: Instant) -> Option<Arc<Document>> {
        let slot = &self.slots[id.slot()];
        // Subscribe before looking, so that a copy stored in between is not missed.
        let mut changes = slot.changed.subscribe();
        loop {
            if let Some(doc) = slot.current.load_full() {
                return Some(doc);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return slot.current.load_full(),
            }
        }
    }

    /// Signals every replacement of one document (a key set refresher follows its
    /// discovery document this way).
    pub fn changes(&self, id: DocId) -> watch::Receiver<u64> {
        self.slots[id.slot()].changed.subscribe()
    }

    /// Replaces the copy. Only the document's refresher calls this.
    pub fn put(&self, id: DocId, doc: Arc<Document>) {
        let slot = &self.slots[id.slot()];
        slot.current.store(Some(doc));
        slot.changed.send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Takes the copy away: a key set whose every key has been withdrawn or has expired
    /// must not be served at all. Only the document's refresher calls this.
    pub fn clear(&self, id: DocId) {
        let slot = &self.slots[id.slot()];
        slot.current.store(None);
        slot.changed.send_modify(|version| *version = version.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::document::{CachePolicy, DocKind};
    use std::time::{Duration, SystemTime};

    fn doc() -> Arc<Document> {
        let policy = CachePolicy {
            max_age: Duration::from_secs(300),
            refresh: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(3600),
        };
        Arc::new(Document::new(
            DocKind::Jwks,
            bytes::Bytes::from_static(b"{}"),
            SystemTime::now(),
            None,
            &policy,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_wait_ends_exactly_at_the_deadline() {
        let store = DocumentStore::new(1);
        let start = Instant::now();
        assert!(store
            .wait(DocId::jwks(0), start + Duration::from_secs(2))
            .await
            .is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_get_the_document_as_soon_as_it_is_stored() {
        let store = Arc::new(DocumentStore::new(2));
        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            writer.put(DocId::jwks(1), doc());
        });
        let start = Instant::now();
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.wait(DocId::jwks(1), start + Duration::from_secs(2)).await })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.await.unwrap().is_some());
        }
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // Other documents are unaffected.
        assert!(store.get(DocId::jwks(0)).is_none());
        assert!(store.get(DocId::discovery(1)).is_none());
    }
}
