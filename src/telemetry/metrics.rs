//! `Metrics`: the Prometheus registry, with handles resolved once so recording is atomics only.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::model::doc_id::DocId;
use crate::model::document::CacheStatus;
use crate::model::key_event::KeyEventKind;
use crate::model::listener::Listener;
use crate::model::outcome::FetchOutcome;
use crate::telemetry::connections::{ConnMetrics, ConnectionMetrics};
use crate::telemetry::documents::DocumentMetrics;
use crate::telemetry::publish::{PublishMetrics, UploadOutcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcmeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: String,
}

/// All metrics of the process, in the order `/metrics` shows them: build, documents and
/// issuers, connections, certificates.
pub struct Metrics {
    registry: Registry,
    documents: DocumentMetrics,
    connections: ConnectionMetrics,
    publish: PublishMetrics,
    certificate_expiry: Family<CertLabels, Gauge<f64, AtomicU64>>,
    pub certificate_reload_failures: Counter,
    /// ACME orders that ended with a certificate.
    pub acme_issued: Counter,
    /// ACME orders that failed (the current certificate, if any, stayed).
    pub acme_failed: Counter,
}

impl Metrics {
    pub fn new(issuers: Vec<String>) -> Metrics {
        Metrics::with_publish(issuers, Vec::new())
    }

    /// With the `[[publish]]` pairs, (sink url, issuer name), whose publishers count here.
    pub fn with_publish(issuers: Vec<String>, publish_pairs: Vec<(String, String)>) -> Metrics {
        let mut registry = Registry::with_prefix("jwks_edge");
        registry.register(
            "build",
            "Version of the running binary",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let documents = DocumentMetrics::register(&mut registry, issuers);
        let connections = ConnectionMetrics::register(&mut registry);
        let publish = PublishMetrics::register(&mut registry, publish_pairs);
        let certificate_expiry = Family::<CertLabels, Gauge<f64, AtomicU64>>::default();
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
        Metrics {
            registry,
            documents,
            connections,
            publish,
            certificate_expiry,
            certificate_reload_failures,
            acme_issued,
            acme_failed,
        }
    }

    /// Records one answered request (`doc`: the document it was for, if any).
    pub fn request(&self, doc: Option<DocId>, status: u16, cache: Option<CacheStatus>, elapsed: Duration) {
        self.documents.request(doc, status, cache, elapsed);
    }

    /// Records one upstream fetch and how it ended.
    pub fn fetch(&self, doc: DocId, outcome: FetchOutcome, elapsed: Duration) {
        self.documents.fetch(doc, outcome, elapsed);
    }

    /// Records that a request's poke made `issuer`'s key set refresher fetch early.
    pub fn revalidation(&self, issuer: usize) {
        self.documents.revalidation(issuer);
    }

    /// The connection metrics of one listener.
    pub fn listener(&self, listener: Listener) -> ConnMetrics {
        self.connections.listener(listener)
    }

    /// Sets the point-in-time gauges of one document (called at scrape time).
    pub fn set_document(&self, doc: DocId, age: Option<Duration>, last_success_unix: Option<f64>, servable: bool) {
        self.documents.set_document(doc, age, last_success_unix, servable);
    }

    /// Sets whether the issuer's upstream names itself other than public_url (at scrape time).
    pub fn set_issuer_mismatch(&self, issuer: usize, mismatch: bool) {
        self.documents.set_issuer_mismatch(issuer, mismatch);
    }

    /// Sets how many keys the issuer's published key set holds (at scrape time).
    pub fn set_published_keys(&self, issuer: usize, count: usize) {
        self.documents.set_published_keys(issuer, count);
    }

    /// Counts one change to an issuer's keys.
    pub fn key_event(&self, issuer: usize, event: KeyEventKind) {
        self.documents.key_event(issuer, event);
    }

    /// Counts one object a publisher checked in a sink (`pair`: index of the
    /// `with_publish` pairs).
    pub fn publish_upload(&self, pair: usize, outcome: UploadOutcome) {
        self.publish.upload(pair, outcome);
    }

    /// Sets a publish pair's gauges (called at scrape time).
    pub fn set_publish_pair(&self, pair: usize, last_success_age: Option<Duration>, consecutive_failures: u64) {
        self.publish.set_pair(pair, last_success_age, consecutive_failures);
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn each_status_counts_in_its_own_series_with_or_without_a_copy() {
        let metrics = Metrics::new(vec!["a".into()]);
        let pairs = [
            (200, Some(CacheStatus::Hit)),
            (304, Some(CacheStatus::Stale)),
            (200, Some(CacheStatus::Collapsed)),
        ]
        .into_iter()
        .chain([200, 204, 304, 400, 404, 405, 503, 431].map(|status| (status, None)));
        for (status, cache) in pairs {
            metrics.request(None, status, cache, Duration::from_micros(5));
        }
        let series = counted(&metrics, "jwks_edge_requests_total");
        assert_eq!(series.len(), 11, "{series:#?}");
        let other = r#"jwks_edge_requests_total{issuer="",document="none",status="other",cache_status="none"} 1"#;
        assert!(series.iter().any(|s| s == other), "{series:#?}");
    }

    #[test]
    fn a_pair_that_cannot_occur_is_still_counted_if_it_does() {
        let metrics = Metrics::new(vec!["a".into()]);
        metrics.request(Some(DocId::jwks(0)), 405, Some(CacheStatus::Collapsed), Duration::ZERO);
        metrics.request(Some(DocId::jwks(0)), 405, Some(CacheStatus::Collapsed), Duration::ZERO);
        assert_eq!(
            counted(&metrics, "jwks_edge_requests_total"),
            [r#"jwks_edge_requests_total{issuer="a",document="jwks",status="405",cache_status="collapsed"} 2"#]
        );
    }

    #[test]
    fn publish_series_exist_for_the_pairs_that_occur_under_the_names_alerts_use() {
        let pairs = vec![
            ("s3://b/p".to_owned(), "a".to_owned()),
            ("gs://g".to_owned(), "a".to_owned()),
        ];
        let metrics = Metrics::with_publish(vec!["a".into()], pairs);
        assert!(!metrics
            .encode()
            .lines()
            .any(|l| l.starts_with("jwks_edge_publish_") && !l.starts_with('#')));
        for outcome in UploadOutcome::ALL {
            metrics.publish_upload(1, outcome);
        }
        metrics.publish_upload(1, UploadOutcome::Written);
        metrics.set_publish_pair(0, None, 3);
        metrics.set_publish_pair(1, Some(Duration::from_secs(7)), 0);
        assert_eq!(
            counted(&metrics, "jwks_edge_publish_uploads_total"),
            [
                r#"jwks_edge_publish_uploads_total{sink="gs://g",issuer="a",outcome="failed"} 1"#,
                r#"jwks_edge_publish_uploads_total{sink="gs://g",issuer="a",outcome="unchanged"} 1"#,
                r#"jwks_edge_publish_uploads_total{sink="gs://g",issuer="a",outcome="written"} 2"#,
            ]
        );
        assert_eq!(
            counted(&metrics, "jwks_edge_publish_last_success_age_seconds"),
            [r#"jwks_edge_publish_last_success_age_seconds{sink="gs://g",issuer="a"} 7.0"#]
        );
        assert_eq!(
            counted(&metrics, "jwks_edge_publish_consecutive_failures"),
            [r#"jwks_edge_publish_consecutive_failures{sink="s3://b/p",issuer="a"} 3"#]
        );
    }

    #[test]
    fn counters_exist_once_they_count_and_state_gauges_from_the_start() {
        let issuers: Vec<String> = (0..50).map(|n| format!("i{n}")).collect();
        let metrics = Metrics::new(issuers);
        let text = metrics.encode();
        let series = |family: &str| text.lines().filter(|l| l.starts_with(family)).count();
        for family in [
            "jwks_edge_requests_total{",
            "jwks_edge_stale_responses_total{",
            "jwks_edge_upstream_fetches_total{",
            "jwks_edge_revalidations_total{",
            "jwks_edge_key_rotations_total{",
        ] {
            assert_eq!(series(family), 0, "{family} before anything counted");
        }
        assert_eq!(series("jwks_edge_document_servable{"), 100);
        assert_eq!(series("jwks_edge_issuer_mismatch{"), 50);
        assert_eq!(series("jwks_edge_published_keys{"), 50);
        // By document only: 3 and 2 histograms of 16 bounds, +Inf, sum and count.
        assert_eq!(series("jwks_edge_request_duration_seconds_"), 3 * 19);
        assert_eq!(series("jwks_edge_upstream_fetch_duration_seconds_"), 2 * 19);
        assert!(!text
            .lines()
            .any(|l| l.contains("_duration_seconds") && l.contains("issuer=")));
    }
}
