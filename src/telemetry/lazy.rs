//! `LazyCounters`: a counter family whose series exist once they first count.

use std::hash::Hash;
use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// A counter family whose series are created on first use: at a thousand issuers, most
/// label combinations never occur, and a series at 0 for each of them is what made a
/// scrape megabytes long. Each series is resolved once into its cell, so recording it
/// again is an atomic load and an add, with no hashing and no lock.
pub struct LazyCounters<L> {
    family: Family<L, Counter>,
    cells: Box<[OnceLock<Counter>]>,
}

impl<L: Clone + Hash + Eq> LazyCounters<L> {
    /// `cells` series at most are resolved; `family` is the registered family.
    pub fn new(family: Family<L, Counter>, cells: usize) -> LazyCounters<L> {
        LazyCounters {
            family,
            cells: (0..cells).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one in the series of `cell`, whose labels `labels` gives the first time.
    pub fn inc(&self, cell: usize, labels: impl FnOnce() -> L) {
        match self.cells.get(cell) {
            Some(cell) => {
                cell.get_or_init(|| self.family.get_or_create(&labels()).clone()).inc();
            }
            None => self.inc_unresolved(&labels()),
        }
    }

    /// Counts one in the series of `labels` with no cell (a combination the callers
    /// never expect): slower, through the family's map, but never lost.
    pub fn inc_unresolved(&self, labels: &L) {
        // The guard is dropped at the end of the statement, before any other lookup.
        self.family.get_or_create(labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        name: &'static str,
    }

    #[test]
    fn a_series_exists_once_it_counted_and_counts_in_its_cell_or_without_one() {
        let mut registry = Registry::default();
        let family = Family::<Labels, Counter>::default();
        registry.register("t", "test", family.clone());
        let counters = LazyCounters::new(family, 2);
        let encode = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let mut series: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            series.sort();
            series
        };
        assert!(encode().is_empty());
        counters.inc(1, || Labels { name: "b" });
        counters.inc(1, || unreachable!("a resolved cell never asks for its labels again"));
        counters.inc(7, || Labels { name: "far" });
        counters.inc_unresolved(&Labels { name: "b" });
        assert_eq!(encode(), ["t_total{name=\"b\"} 3", "t_total{name=\"far\"} 1"]);
    }
}
