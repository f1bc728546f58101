//! `PublishMetrics`: uploads to the `[[publish]]` sinks by outcome, and each pair's state.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::lazy::LazyCounters;

/// How one object's upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Uploaded: missing, different, or with other headers.
    Written,
    /// The sink already held it; nothing was uploaded.
    Unchanged,
    /// The attempt failed (the sink keeps what it had).
    Failed,
}

impl UploadOutcome {
    /// Every outcome, in declaration order (so `outcome as usize` indexes it).
    pub const ALL: [UploadOutcome; 3] = [UploadOutcome::Written, UploadOutcome::Unchanged, UploadOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadOutcome::Written => "written",
            UploadOutcome::Unchanged => "unchanged",
            UploadOutcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    sink: String,
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    sink: String,
    issuer: String,
    outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The publish families. A pair is a (sink url, issuer name) of the config, by index;
/// upload series exist once they count, the gauges once the admin listener sets them.
pub struct PublishMetrics {
    pairs: Vec<(String, String)>,
    /// One cell per (pair, `UploadOutcome::ALL` entry).
    uploads: LazyCounters<UploadLabels>,
    last_success_age: Family<PairLabels, FloatGauge>,
    consecutive_failures: Family<PairLabels, Gauge>,
}

impl PublishMetrics {
    pub fn register(registry: &mut Registry, pairs: Vec<(String, String)>) -> PublishMetrics {
        let uploads = Family::<UploadLabels, Counter>::default();
        registry.register(
            "publish_uploads",
            "Objects the publisher checked in a sink, by sink, issuer and outcome (written, unchanged, failed)",
            uploads.clone(),
        );
        let last_success_age = Family::<PairLabels, FloatGauge>::default();
        registry.register_with_unit(
            "publish_last_success_age",
            "Time since the sink last held every current document of the issuer",
            Unit::Seconds,
            last_success_age.clone(),
        );
        let consecutive_failures = Family::<PairLabels, Gauge>::default();
        registry.register(
            "publish_consecutive_failures",
            "Failed attempts in a row to bring the sink up to date with the issuer's documents",
            consecutive_failures.clone(),
        );
        PublishMetrics {
            uploads: LazyCounters::new(uploads, pairs.len() * UploadOutcome::ALL.len()),
            pairs,
            last_success_age,
            consecutive_failures,
        }
    }

    fn labels(&self, pair: usize) -> PairLabels {
        let (sink, issuer) = self.pairs.get(pair).cloned().unwrap_or_default();
        PairLabels { sink, issuer }
    }

    /// Counts one object of `pair` that ended with `outcome`.
    pub fn upload(&self, pair: usize, outcome: UploadOutcome) {
        self.uploads
            .inc(pair * UploadOutcome::ALL.len() + outcome as usize, || {
                let PairLabels { sink, issuer } = self.labels(pair);
                UploadLabels {
                    sink,
                    issuer,
                    outcome: outcome.as_str(),
                }
            });
    }

    /// Sets the pair's gauges (at scrape time); no age series before a first success.
    pub fn set_pair(&self, pair: usize, last_success_age: Option<Duration>, consecutive_failures: u64) {
        let labels = self.labels(pair);
        if let Some(age) = last_success_age {
            self.last_success_age.get_or_create(&labels).set(age.as_secs_f64());
        }
        self.consecutive_failures
            .get_or_create(&labels)
            .set(i64::try_from(consecutive_failures).unwrap_or(i64::MAX));
    }
}
