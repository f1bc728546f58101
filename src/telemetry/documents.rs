//! `DocumentMetrics`: the document and issuer families, series only for what occurs or exists.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::model::doc_id::DocId;
use crate::model::document::{CacheStatus, DocKind};
use crate::model::key_event::KeyEventKind;
use crate::model::outcome::FetchOutcome;
use crate::telemetry::histogram::LatencyHistogram;
use crate::telemetry::lazy::LazyCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    issuer: String,
    document: &'static str,
    status: &'static str,
    cache_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DocLabels {
    issuer: String,
    document: &'static str,
}

/// The label of the histograms: by document only, whatever the number of issuers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DocumentLabel {
    document: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyEventLabels {
    issuer: String,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    issuer: String,
    document: &'static str,
    outcome: &'static str,
}

/// Statuses the proxy itself answers with; anything else counts as "other".
const STATUSES: [&str; 8] = ["200", "204", "304", "400", "404", "405", "503", "other"];

fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        204 => 1,
        304 => 2,
        400 => 3,
        404 => 4,
        405 => 5,
        503 => 6,
        _ => 7,
    }
}

/// The `(status, cache_status)` pairs a request can end with: a copy was sent (`hit`,
/// `stale` or `collapsed`) only as a 200 or a 304; every other answer has no cache status.
const REQUEST_CELLS: usize = CacheStatus::ALL.len() * 2 + STATUSES.len();

/// The cell of a `(status, cache)` pair among `REQUEST_CELLS`, `None` for one that
/// cannot occur (a cache status with neither 200 nor 304).
fn request_cell(status: u16, cache: Option<CacheStatus>) -> Option<usize> {
    match (cache, status) {
        (Some(cache), 200) => Some(cache as usize * 2),
        (Some(cache), 304) => Some(cache as usize * 2 + 1),
        (Some(_), _) => None,
        (None, status) => Some(CacheStatus::ALL.len() * 2 + status_index(status)),
    }
}

fn status_label(status: u16) -> &'static str {
    STATUSES[status_index(status)]
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The per-document families, and the ones that need no issuer. Series that count events
/// exist once they first count; gauges that say a document's or an issuer's state exist
/// for each from the start. Histograms are by document only, so their cost does not grow
/// with the issuers. Labels are bounded by the config; no path or client address is one.
pub struct DocumentMetrics {
    issuers: Vec<String>,
    /// Per slot (each document, then "none"), one cell per `REQUEST_CELLS` pair.
    requests: LazyCounters<RequestLabels>,
    /// Discovery, key set, then requests that named no document.
    durations: [LatencyHistogram; 3],
    /// One cell per document.
    stale: LazyCounters<DocLabels>,
    /// One cell per (document, `FetchOutcome::ALL` entry).
    fetches: LazyCounters<FetchLabels>,
    /// Discovery, then key set.
    fetch_durations: [LatencyHistogram; 2],
    /// One cell per issuer: key set fetches started early by a request (`revalidate`).
    revalidations: LazyCounters<DocLabels>,
    document_age: Family<DocLabels, FloatGauge>,
    last_success: Family<DocLabels, FloatGauge>,
    servable: Vec<Gauge>,
    issuer_mismatch: Vec<Gauge>,
    published_keys: Vec<Gauge>,
    /// One cell per (issuer, `KeyEventKind::ALL` entry).
    key_events: LazyCounters<KeyEventLabels>,
}

impl DocumentMetrics {
    pub fn register(registry: &mut Registry, issuers: Vec<String>) -> DocumentMetrics {
        let requests_family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered on the public listeners, by issuer, document, status and cache status",
            requests_family.clone(),
        );
        let durations_family = Family::<DocumentLabel, LatencyHistogram>::default();
        registry.register_with_unit(
            "request_duration",
            "Time from request head to response head on the public listeners",
            Unit::Seconds,
            durations_family.clone(),
        );
        let stale_family = Family::<DocLabels, Counter>::default();
        registry.register(
            "stale_responses",
            "Responses that served a stale copy because the upstream is failing",
            stale_family.clone(),
        );
        let fetches_family = Family::<FetchLabels, Counter>::default();
        registry.register(
            "upstream_fetches",
            "Upstream fetches by issuer, document and outcome",
            fetches_family.clone(),
        );
        let fetch_durations_family = Family::<DocumentLabel, LatencyHistogram>::default();
        registry.register_with_unit(
            "upstream_fetch_duration",
            "Duration of upstream fetches, failed ones included",
            Unit::Seconds,
            fetch_durations_family.clone(),
        );
        let revalidations_family = Family::<DocLabels, Counter>::default();
        registry.register(
            "revalidations",
            "Key set fetches started early because a request found the copy older than cache.revalidate_after \
             (also counted in upstream_fetches)",
            revalidations_family.clone(),
        );
        let document_age = Family::<DocLabels, FloatGauge>::default();
        registry.register_with_unit(
            "document_age",
            "Age of the copy each document is served from (absent while there is none)",
            Unit::Seconds,
            document_age.clone(),
        );
        let last_success = Family::<DocLabels, FloatGauge>::default();
        registry.register_with_unit(
            "upstream_last_success_timestamp",
            "Unix time of the last successful fetch of each document",
            Unit::Seconds,
            last_success.clone(),
        );
        let servable_family = Family::<DocLabels, Gauge>::default();
        registry.register(
            "document_servable",
            "1 while the document can be served (a fresh or stale copy), 0 while it cannot (missing or expired)",
            servable_family.clone(),
        );
        let mismatch_family = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "issuer_mismatch",
            "1 while the upstream's `issuer` differs from public_url (relying parties refuse the tokens)",
            mismatch_family.clone(),
        );
        let published_keys_family = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "published_keys",
            "Keys in the key set being published (retained keys included, withdrawn ones never)",
            published_keys_family.clone(),
        );
        let key_events_family = Family::<KeyEventLabels, Counter>::default();
        registry.register(
            "key_rotations",
            "Changes to the published keys: added, removed (upstream), expired (a retained key no longer published), withdrawn (seen, never published)",
            key_events_family.clone(),
        );

        let histograms = |family: &Family<DocumentLabel, LatencyHistogram>, documents: &[&'static str]| {
            documents
                .iter()
                .map(|&document| family.get_or_create(&DocumentLabel { document }).clone())
                .collect::<Vec<_>>()
        };
        let durations = histograms(&durations_family, &["discovery", "jwks", "none"])
            .try_into()
            .expect("three documents");
        let fetch_durations = histograms(&fetch_durations_family, &["discovery", "jwks"])
            .try_into()
            .expect("two documents");
        let per_issuer = |family: &Family<IssuerLabels, Gauge>| -> Vec<Gauge> {
            issuers
                .iter()
                .map(|issuer| family.get_or_create(&IssuerLabels { issuer: issuer.clone() }).clone())
                .collect()
        };
        let issuer_mismatch = per_issuer(&mismatch_family);
        let published_keys = per_issuer(&published_keys_family);
        let servable = (0..issuers.len() * 2)
            .map(|slot| {
                let labels = DocLabels {
                    issuer: issuers[slot / 2].clone(),
                    document: slot_kind(slot).as_str(),
                };
                servable_family.get_or_create(&labels).clone()
            })
            .collect();
        let documents = issuers.len() * 2;
        DocumentMetrics {
            requests: LazyCounters::new(requests_family, (documents + 1) * REQUEST_CELLS),
            durations,
            stale: LazyCounters::new(stale_family, documents),
            fetches: LazyCounters::new(fetches_family, documents * FetchOutcome::ALL.len()),
            fetch_durations,
            revalidations: LazyCounters::new(revalidations_family, issuers.len()),
            document_age,
            last_success,
            servable,
            issuer_mismatch,
            published_keys,
            key_events: LazyCounters::new(key_events_family, issuers.len() * KeyEventKind::ALL.len()),
            issuers,
        }
    }

    /// The `issuer` and `document` labels of `slot` (`issuers.len() * 2`: no document).
    fn doc_labels(&self, slot: usize) -> (String, &'static str) {
        match self.issuers.get(slot / 2) {
            Some(name) => (name.clone(), slot_kind(slot).as_str()),
            None => (String::new(), "none"),
        }
    }

    /// Records one answered request (`doc`: the document it was for, if any).
    pub fn request(&self, doc: Option<DocId>, status: u16, cache: Option<CacheStatus>, elapsed: Duration) {
        let slot = doc.map_or(self.issuers.len() * 2, DocId::slot);
        let labels = || {
            let (issuer, document) = self.doc_labels(slot);
            RequestLabels {
                issuer,
                document,
                status: status_label(status),
                cache_status: cache.map_or("none", CacheStatus::as_str),
            }
        };
        match request_cell(status, cache) {
            Some(cell) => self.requests.inc(slot * REQUEST_CELLS + cell, labels),
            None => self.requests.inc_unresolved(&labels()),
        }
        let kind = doc.map_or(2, |doc| doc.kind as usize);
        self.durations[kind].observe(elapsed);
        if let (Some(doc), Some(CacheStatus::Stale)) = (doc, cache) {
            self.stale.inc(doc.slot(), || {
                let (issuer, document) = self.doc_labels(doc.slot());
                DocLabels { issuer, document }
            });
        }
    }

    /// Records one upstream fetch and how it ended.
    pub fn fetch(&self, doc: DocId, outcome: FetchOutcome, elapsed: Duration) {
        self.fetches
            .inc(doc.slot() * FetchOutcome::ALL.len() + outcome as usize, || {
                let (issuer, document) = self.doc_labels(doc.slot());
                FetchLabels {
                    issuer,
                    document,
                    outcome: outcome.as_str(),
                }
            });
        self.fetch_durations[doc.kind as usize].observe(elapsed);
    }

    /// Records that a request's poke made `issuer`'s key set refresher fetch early.
    pub fn revalidation(&self, issuer: usize) {
        self.revalidations.inc(issuer, || DocLabels {
            issuer: self.issuers.get(issuer).cloned().unwrap_or_default(),
            document: DocKind::Jwks.as_str(),
        });
    }

    /// Sets the point-in-time gauges of one document (called at scrape time).
    pub fn set_document(&self, doc: DocId, age: Option<Duration>, last_success_unix: Option<f64>, servable: bool) {
        self.servable[doc.slot()].set(i64::from(servable));
        let labels = DocLabels {
            issuer: self.issuers[doc.issuer].clone(),
            document: doc.kind.as_str(),
        };
        // Milliseconds and whole seconds: finer digits are noise every scrape pays for,
        // a thousand times over with a thousand issuers.
        match age {
            Some(age) => {
                self.document_age
                    .get_or_create(&labels)
                    .set(age.as_millis() as f64 / 1e3);
            }
            None => {
                self.document_age.remove(&labels);
            }
        }
        if let Some(t) = last_success_unix {
            self.last_success.get_or_create(&labels).set(t.floor());
        }
    }

    /// Sets whether the issuer's upstream names itself other than public_url (at scrape time).
    pub fn set_issuer_mismatch(&self, issuer: usize, mismatch: bool) {
        self.issuer_mismatch[issuer].set(i64::from(mismatch));
    }

    /// Sets how many keys the issuer's published key set holds (at scrape time).
    pub fn set_published_keys(&self, issuer: usize, count: usize) {
        self.published_keys[issuer].set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one change to an issuer's keys.
    pub fn key_event(&self, issuer: usize, event: KeyEventKind) {
        self.key_events
            .inc(issuer * KeyEventKind::ALL.len() + event as usize, || KeyEventLabels {
                issuer: self.issuers.get(issuer).cloned().unwrap_or_default(),
                event: event.as_str(),
            });
    }
}

/// The kind of the document at `slot` (the inverse of `DocId::slot`).
fn slot_kind(slot: usize) -> DocKind {
    if slot % 2 == 0 {
        DocKind::Discovery
    } else {
        DocKind::Jwks
    }
}
