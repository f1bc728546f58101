//! `ReachBoard`: which client families fetched each document, how often and when last,
//! and how many requests got a stale copy or a 503; counted on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::model::client_family::ClientFamily;
use crate::model::DocId;

const FAMILIES: usize = ClientFamily::ALL.len();

/// One document's counters.
#[derive(Default)]
struct Slot {
    requests: [AtomicU64; FAMILIES],
    /// Unix seconds of each family's last request; 0 is never.
    last_seen: [AtomicU64; FAMILIES],
    stale: AtomicU64,
    unavailable: AtomicU64,
}

/// One slot per configured document, indexed like the store.
///
/// Concurrency contract: written by every request for the document (relaxed atomic adds
/// and stores: no lock, no allocation), read by the admin listener. The counts and times
/// are each exact; read together they may be a request apart, which no reader minds.
/// Never metric labels: the families are counted here, for the status page and `/readyz`.
pub struct ReachBoard {
    slots: Vec<Slot>,
}

/// What the admin listener shows of one family's requests for one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyReach {
    pub family: ClientFamily,
    pub requests: u64,
    pub last_seen: SystemTime,
}

/// A document's relying-party requests, read at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The families that asked at least once, most recent first.
    pub families: Vec<FamilyReach>,
    /// Requests answered with a stale copy (stale-if-error / stale-while-revalidate).
    pub stale: u64,
    /// Requests answered 503: no copy, or only an expired one.
    pub unavailable: u64,
}

impl Reach {
    pub fn requests(&self) -> u64 {
        self.families.iter().map(|f| f.requests).sum()
    }

    pub fn last_seen(&self) -> Option<SystemTime> {
        self.families.first().map(|f| f.last_seen)
    }
}

impl ReachBoard {
    pub fn new(issuers: usize) -> ReachBoard {
        ReachBoard {
            slots: (0..issuers * 2).map(|_| Slot::default()).collect(),
        }
    }

    /// Counts one request for `doc` from `family`, answered `status`, `stale` or not.
    pub fn record(&self, doc: DocId, family: ClientFamily, status: u16, stale: bool, now: SystemTime) {
        let slot = &self.slots[doc.slot()];
        let family = family as usize;
        slot.requests[family].fetch_add(1, Ordering::Relaxed);
        let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        slot.last_seen[family].store(seconds, Ordering::Relaxed);
        if stale {
            slot.stale.fetch_add(1, Ordering::Relaxed);
        }
        if status == 503 {
            slot.unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, doc: DocId) -> Reach {
        let slot = &self.slots[doc.slot()];
        let mut families: Vec<_> = ClientFamily::ALL
            .iter()
            .filter_map(|&family| {
                let requests = slot.requests[family as usize].load(Ordering::Relaxed);
                let seconds = slot.last_seen[family as usize].load(Ordering::Relaxed);
                (requests > 0).then(|| FamilyReach {
                    family,
                    requests,
                    last_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
                })
            })
            .collect();
        families.sort_by_key(|f| std::cmp::Reverse(f.last_seen));
        Reach {
            families,
            stale: slot.stale.load(Ordering::Relaxed),
            unavailable: slot.unavailable.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_document_and_family() {
        let board = ReachBoard::new(2);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = t + Duration::from_secs(60);
        board.record(DocId::jwks(1), ClientFamily::Aws, 200, false, t);
        board.record(DocId::jwks(1), ClientFamily::Aws, 200, true, t);
        board.record(DocId::jwks(1), ClientFamily::Curl, 503, false, later);
        let reach = board.get(DocId::jwks(1));
        assert_eq!(reach.requests(), 3);
        assert_eq!(reach.last_seen(), Some(later));
        assert_eq!(reach.families[0].family, ClientFamily::Curl);
        assert_eq!(reach.families[1].requests, 2);
        assert_eq!((reach.stale, reach.unavailable), (1, 1));
        assert_eq!(board.get(DocId::discovery(1)), Reach::default());
        assert_eq!(board.get(DocId::jwks(0)).last_seen(), None);
    }
}
