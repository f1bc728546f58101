//! `LatencyHistogram`: a duration histogram recorded with atomics only, for the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

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

#[cfg(test)]
mod tests {
    use prometheus_client::registry::{Registry, Unit};

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
}
