//! `DocumentStore`: the last good copy of every document, read by requests, written by refreshers.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::document::{DocKind, Document};

/// Names one document: issuer index (order in the config) and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DocId {
    pub issuer: usize,
    pub kind: DocKind,
}

impl DocId {
    pub fn discovery(issuer: usize) -> DocId {
        DocId {
            issuer,
            kind: DocKind::Discovery,
        }
    }

    pub fn jwks(issuer: usize) -> DocId {
        DocId {
            issuer,
            kind: DocKind::Jwks,
        }
    }

    /// Position in per-document vectors (store slots, health records).
    pub fn slot(self) -> usize {
        self.issuer * 2
            + match self.kind {
                DocKind::Discovery => 0,
                DocKind::Jwks => 1,
            }
    }
}

/// One slot per configured document. The set of documents is fixed by the config, so the
/// store is a vector, not a map, and needs no eviction.
///
/// Concurrency contract: each slot has exactly one writer, the refresher task of that
/// document, which replaces the copy only with a validated one. Requests only read. A
/// request that finds no copy waits on the slot's channel for the refresher's fetch, so
/// any number of concurrent cold misses share that one upstream fetch.
pub struct DocumentStore {
    slots: Vec<watch::Sender<Option<Arc<Document>>>>,
}

impl DocumentStore {
    pub fn new(issuers: usize) -> DocumentStore {
        DocumentStore {
            slots: (0..issuers * 2).map(|_| watch::Sender::new(None)).collect(),
        }
    }

    /// The current copy, if any.
    pub fn get(&self, id: DocId) -> Option<Arc<Document>> {
        self.slots[id.slot()].borrow().clone()
    }

    /// The current copy, or the first one stored before `deadline`.
    pub async fn wait(&self, id: DocId, deadline: Instant) -> Option<Arc<Document>> {
        let mut rx = self.slots[id.slot()].subscribe();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(doc)) => doc.clone(),
            _ => None,
        }
    }

    /// Watches one document (refreshers of a key set follow their discovery document).
    pub fn subscribe(&self, id: DocId) -> watch::Receiver<Option<Arc<Document>>> {
        self.slots[id.slot()].subscribe()
    }

    /// Replaces the copy. Only the document's refresher calls this.
    pub fn put(&self, id: DocId, doc: Arc<Document>) {
        self.slots[id.slot()].send_replace(Some(doc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::CachePolicy;
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
