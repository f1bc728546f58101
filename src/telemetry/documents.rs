//! `DocumentMetrics`: every series labelled by issuer, resolved at start so recording is an index.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::model::doc_id::DocId;
use crate::model::document::{CacheStatus, DocKind};
use crate::model::key_event::KeyEventKind;
use crate::model::outcome::FetchOutcome;
use crate::telemetry::histogram::LatencyHistogram;

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

/// `cache_status` labels: each `CacheStatus`, then "none" for a response without one.
const CACHE_LABELS: usize = CacheStatus::ALL.len() + 1;

fn cache_label(index: usize) -> &'static str {
    CacheStatus::ALL.get(index).map_or("none", |status| status.as_str())
}

fn cache_index(cache: Option<CacheStatus>) -> usize {
    cache.map_or(CacheStatus::ALL.len(), |status| status as usize)
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every series labelled by issuer. Label sets are bounded by the config (issuer names,
/// two documents, fixed status and outcome sets); no path or client address is a label.
pub struct DocumentMetrics {
    issuers: Vec<String>,
    /// One counter per (document or none, status, cache status), resolved at start.
    requests: Vec<Counter>,
    durations: Vec<LatencyHistogram>,
    stale: Vec<Counter>,
    /// One counter per (document, `FetchOutcome::ALL` entry).
    fetches: Vec<Counter>,
    fetch_durations: Vec<LatencyHistogram>,
    /// One per issuer: key set fetches started early by a request (`revalidate`).
    revalidations: Vec<Counter>,
    document_age: Family<DocLabels, FloatGauge>,
    last_success: Family<DocLabels, FloatGauge>,
    servable: Vec<Gauge>,
    issuer_mismatch: Vec<Gauge>,
    published_keys: Vec<Gauge>,
    /// One counter per (issuer, `KeyEventKind::ALL` entry).
    key_events: Vec<Counter>,
}

impl DocumentMetrics {
    pub fn register(registry: &mut Registry, issuers: Vec<String>) -> DocumentMetrics {
        let requests_family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered on the public listeners, by issuer, document, status and cache status",
            requests_family.clone(),
        );
        let durations_family = Family::<DocLabels, LatencyHistogram>::default();
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
        let fetch_durations_family = Family::<DocLabels, LatencyHistogram>::default();
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

        // Slot `issuers.len() * 2` holds the requests that named no document.
        let doc_label = |slot: usize| -> (String, &'static str) {
            match issuers.get(slot / 2) {
                Some(name) => (name.clone(), slot_kind(slot).as_str()),
                None => (String::new(), "none"),
            }
        };
        let slots = issuers.len() * 2 + 1;
        let mut requests = Vec::with_capacity(slots * STATUSES.len() * CACHE_LABELS);
        for slot in 0..slots {
            let (issuer, document) = doc_label(slot);
            for status in STATUSES {
                for cache in 0..CACHE_LABELS {
                    let labels = RequestLabels {
                        issuer: issuer.clone(),
                        document,
                        status,
                        cache_status: cache_label(cache),
                    };
                    requests.push(requests_family.get_or_create(&labels).clone());
                }
            }
        }
        fn per_doc<M: Clone, C: MetricConstructor<M>>(
            family: &Family<DocLabels, M, C>,
            labels: &dyn Fn(usize) -> (String, &'static str),
            count: usize,
        ) -> Vec<M> {
            (0..count)
                .map(|slot| {
                    let (issuer, document) = labels(slot);
                    family.get_or_create(&DocLabels { issuer, document }).clone()
                })
                .collect()
        }
        let durations = per_doc(&durations_family, &doc_label, slots);
        let stale = per_doc(&stale_family, &doc_label, issuers.len() * 2);
        let fetch_durations = per_doc(&fetch_durations_family, &doc_label, issuers.len() * 2);
        let servable = per_doc(&servable_family, &doc_label, issuers.len() * 2);
        let revalidations = issuers
            .iter()
            .map(|issuer| {
                let labels = DocLabels {
                    issuer: issuer.clone(),
                    document: DocKind::Jwks.as_str(),
                };
                revalidations_family.get_or_create(&labels).clone()
            })
            .collect();
        let issuer_mismatch = issuers
            .iter()
            .map(|issuer| {
                let labels = IssuerLabels { issuer: issuer.clone() };
                mismatch_family.get_or_create(&labels).clone()
            })
            .collect();
        let published_keys = issuers
            .iter()
            .map(|issuer| {
                let labels = IssuerLabels { issuer: issuer.clone() };
                published_keys_family.get_or_create(&labels).clone()
            })
            .collect();
        let mut key_events = Vec::with_capacity(issuers.len() * KeyEventKind::ALL.len());
        for issuer in &issuers {
            for event in KeyEventKind::ALL {
                let labels = KeyEventLabels {
                    issuer: issuer.clone(),
                    event: event.as_str(),
                };
                key_events.push(key_events_family.get_or_create(&labels).clone());
            }
        }
        let mut fetches = Vec::with_capacity(issuers.len() * 2 * FetchOutcome::ALL.len());
        for slot in 0..issuers.len() * 2 {
            let (issuer, document) = doc_label(slot);
            for outcome in FetchOutcome::ALL {
                let labels = FetchLabels {
                    issuer: issuer.clone(),
                    document,
                    outcome: outcome.as_str(),
                };
                fetches.push(fetches_family.get_or_create(&labels).clone());
            }
        }
        DocumentMetrics {
            issuers,
            requests,
            durations,
            stale,
            fetches,
            fetch_durations,
            revalidations,
            document_age,
            last_success,
            servable,
            issuer_mismatch,
            published_keys,
            key_events,
        }
    }

    /// Records one answered request (`doc`: the document it was for, if any).
    pub fn request(&self, doc: Option<DocId>, status: u16, cache: Option<CacheStatus>, elapsed: Duration) {
        let slot = doc.map_or(self.issuers.len() * 2, DocId::slot);
        let index = (slot * STATUSES.len() + status_index(status)) * CACHE_LABELS + cache_index(cache);
        self.requests[index].inc();
        self.durations[slot].observe(elapsed);
        if let (Some(doc), Some(CacheStatus::Stale)) = (doc, cache) {
            self.stale[doc.slot()].inc();
        }
    }

    /// Records one upstream fetch and how it ended.
    pub fn fetch(&self, doc: DocId, outcome: FetchOutcome, elapsed: Duration) {
        self.fetches[doc.slot() * FetchOutcome::ALL.len() + outcome as usize].inc();
        self.fetch_durations[doc.slot()].observe(elapsed);
    }

    /// Records that a request's poke made `issuer`'s key set refresher fetch early.
    pub fn revalidation(&self, issuer: usize) {
        self.revalidations[issuer].inc();
    }

    /// Sets the point-in-time gauges of one document (called at scrape time).
    pub fn set_document(&self, doc: DocId, age: Option<Duration>, last_success_unix: Option<f64>, servable: bool) {
        self.servable[doc.slot()].set(i64::from(servable));
        let labels = DocLabels {
            issuer: self.issuers[doc.issuer].clone(),
            document: doc.kind.as_str(),
        };
        match age {
            Some(age) => {
                self.document_age.get_or_create(&labels).set(age.as_secs_f64());
            }
            None => {
                self.document_age.remove(&labels);
            }
        }
        if let Some(t) = last_success_unix {
            self.last_success.get_or_create(&labels).set(t);
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
        self.key_events[issuer * KeyEventKind::ALL.len() + event as usize].inc();
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
