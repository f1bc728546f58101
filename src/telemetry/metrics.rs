//! `Metrics`: the Prometheus registry, with handles resolved once so recording is atomics only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::model::document::{CacheStatus, DocKind};
use crate::model::key_event::KeyEventKind;
use crate::model::outcome::FetchOutcome;
use crate::model::DocId;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcmeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: String,
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

/// Upper bounds, in seconds, of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];

/// A duration histogram recorded with atomics only, for the request path
/// (prometheus-client's own histogram takes a lock on every observation).
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// One count per bucket of `LATENCY_BUCKETS`, then one for +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(Arc::new(HistogramCells {
            counts: (0..=LATENCY_BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|bound| *bound < secs);
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Handles of one listener's connection metrics.
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub handshake_errors: Counter,
    pub handshake_timeouts: Counter,
    /// Connections closed at accept: their address already held its limit.
    pub refused_per_address: Counter,
    /// Connections closed because a request head did not arrive within `header_timeout`.
    pub header_timeouts: Counter,
    /// Connections closed after `idle_timeout` without a request.
    pub idle_closes: Counter,
    /// Connections closed because the client took nothing for `send_timeout`.
    pub send_timeouts: Counter,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// All metrics of the process. Label sets are bounded by the config (issuer names, two
/// documents, fixed status and outcome sets); no path or client address is a label.
pub struct Metrics {
    registry: Registry,
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
    connections: Family<ListenerLabels, Gauge>,
    handshakes: Family<ReasonLabels, Counter>,
    closes: Family<ReasonLabels, Counter>,
    certificate_expiry: Family<CertLabels, FloatGauge>,
    pub certificate_reload_failures: Counter,
    /// ACME orders that ended with a certificate.
    pub acme_issued: Counter,
    /// ACME orders that failed (the current certificate, if any, stayed).
    pub acme_failed: Counter,
}

impl Metrics {
    pub fn new(issuers: Vec<String>) -> Metrics {
        let mut registry = Registry::with_prefix("jwks_edge");
        registry.register(
            "build",
            "Version of the running binary",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
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
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("open_connections", "Connections open per listener", connections.clone());
        let handshakes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            handshakes.clone(),
        );
        let closes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the proxy closed, by reason: per_address (refused at accept), header_timeout, idle, send_timeout",
            closes.clone(),
        );
        let certificate_expiry = Family::<CertLabels, FloatGauge>::default();
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "Unix time at which each served certificate expires",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let certificate_reload_failures = Counter::default();
        registry.register(
            "certificate_reload_failures",
            "Certificate reloads refused (the previous certificates stayed)",
            certificate_reload_failures.clone(),
        );
        let acme_orders = Family::<AcmeLabels, Counter>::default();
        registry.register(
            "acme_orders",
            "ACME certificate orders by outcome (issued, failed)",
            acme_orders.clone(),
        );
        let acme_issued = acme_orders.get_or_create(&AcmeLabels { outcome: "issued" }).clone();
        let acme_failed = acme_orders.get_or_create(&AcmeLabels { outcome: "failed" }).clone();

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
        Metrics {
            registry,
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
            connections,
            handshakes,
            closes,
            certificate_expiry,
            certificate_reload_failures,
            acme_issued,
            acme_failed,
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

    /// The connection metrics of one listener.
    pub fn listener(&self, listener: &'static str) -> ConnMetrics {
        // One lookup per statement: a family's read guard must be gone before the next
        // lookup, which may need its write lock.
        let open = self.connections.get_or_create(&ListenerLabels { listener }).clone();
        let reason = |reason| ReasonLabels { listener, reason };
        let handshake_errors = self.handshakes.get_or_create(&reason("error")).clone();
        let handshake_timeouts = self.handshakes.get_or_create(&reason("timeout")).clone();
        let refused_per_address = self.closes.get_or_create(&reason("per_address")).clone();
        let header_timeouts = self.closes.get_or_create(&reason("header_timeout")).clone();
        let idle_closes = self.closes.get_or_create(&reason("idle")).clone();
        let send_timeouts = self.closes.get_or_create(&reason("send_timeout")).clone();
        ConnMetrics {
            open,
            handshake_errors,
            handshake_timeouts,
            refused_per_address,
            header_timeouts,
            idle_closes,
            send_timeouts,
        }
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

    /// Replaces the certificate expiry gauges (called at scrape time).
    pub fn set_certificates(&self, certs: impl Iterator<Item = (String, f64)>) {
        self.certificate_expiry.clear();
        for (cert, not_after) in certs {
            self.certificate_expiry
                .get_or_create(&CertLabels { cert })
                .set(not_after);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_buckets_are_cumulative_and_bounded_inclusively() {
        let mut registry = Registry::default();
        let histogram = LatencyHistogram::default();
        registry.register_with_unit("t", "test", Unit::Seconds, histogram.clone());
        histogram.observe(Duration::from_micros(30));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_secs(10));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("t_seconds_count 3"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"0.00005\"} 1"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"0.001\"} 2"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"5.0\"} 2"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("t_seconds_sum 10.00103"), "{text}");
    }

    /// The series of `family` that have counted something.
    fn counted(metrics: &Metrics, family: &str) -> Vec<String> {
        let text = metrics.encode();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(family) && !l.ends_with(" 0"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn each_fetch_outcome_counts_in_the_series_its_label_names() {
        for outcome in FetchOutcome::ALL {
            let metrics = Metrics::new(vec!["a".into(), "b".into()]);
            metrics.fetch(DocId::jwks(1), outcome, Duration::from_millis(1));
            let label = outcome.as_str();
            assert_eq!(
                counted(&metrics, "jwks_edge_upstream_fetches_total"),
                [format!(
                    "jwks_edge_upstream_fetches_total{{issuer=\"b\",document=\"jwks\",outcome=\"{label}\"}} 1"
                )]
            );
        }
    }

    #[test]
    fn each_key_event_kind_counts_in_the_series_its_label_names() {
        for kind in KeyEventKind::ALL {
            let metrics = Metrics::new(vec!["a".into(), "b".into()]);
            metrics.key_event(0, kind);
            let label = kind.as_str();
            assert_eq!(
                counted(&metrics, "jwks_edge_key_rotations_total"),
                [format!(
                    "jwks_edge_key_rotations_total{{issuer=\"a\",event=\"{label}\"}} 1"
                )]
            );
        }
    }

    #[test]
    fn each_cache_status_counts_in_the_series_its_label_names() {
        let statuses = CacheStatus::ALL.map(Some).into_iter().chain([None]);
        for cache in statuses {
            let metrics = Metrics::new(vec!["a".into()]);
            metrics.request(Some(DocId::discovery(0)), 304, cache, Duration::from_micros(5));
            let label = cache.map_or("none", CacheStatus::as_str);
            assert_eq!(
                counted(&metrics, "jwks_edge_requests_total"),
                [format!(
                    "jwks_edge_requests_total{{issuer=\"a\",document=\"discovery\",status=\"304\",cache_status=\"{label}\"}} 1"
                )]
            );
        }
    }

    #[test]
    fn every_series_of_a_closed_set_exists_before_anything_is_counted() {
        let text = Metrics::new(vec!["a".into()]).encode();
        let series = |family: &str| text.lines().filter(|l| l.starts_with(family)).count();
        assert_eq!(series("jwks_edge_upstream_fetches_total{"), 2 * FetchOutcome::ALL.len());
        assert_eq!(series("jwks_edge_key_rotations_total{"), KeyEventKind::ALL.len());
        // Two documents and "none", each by every status and by every cache status or none.
        assert_eq!(
            series("jwks_edge_requests_total{"),
            3 * 8 * (CacheStatus::ALL.len() + 1)
        );
    }
}
