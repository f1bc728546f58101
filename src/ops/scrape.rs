//! `/metrics`: the point-in-time gauges set from the store, health and key records, then
//! the whole registry encoded for Prometheus.

use std::time::SystemTime;

use crate::model::document::{DocKind, Freshness};
use crate::model::DocId;
use crate::ops::admin::Admin;

impl Admin {
    /// Point-in-time gauges are set from the store and health records at scrape time.
    pub(super) fn metrics_text(&self) -> String {
        let now = SystemTime::now();
        for issuer in 0..self.issuers.len() {
            for kind in [DocKind::Discovery, DocKind::Jwks] {
                let id = DocId { issuer, kind };
                let doc = self.store.get(id);
                let age = doc
                    .as_ref()
                    .map(|d| now.duration_since(d.fetched_at).unwrap_or_default());
                let servable = doc.is_some_and(|d| self.policy.freshness(d.fetched_at, now) != Freshness::Expired);
                let record = self.health.get(id);
                self.metrics
                    .set_document(id, age, record.last_success.map(unix_seconds), servable);
                if kind == DocKind::Discovery {
                    self.metrics
                        .set_issuer_mismatch(issuer, record.issuer_mismatch.is_some());
                }
            }
            let published = match self.store.get(DocId::jwks(issuer)) {
                Some(_) => self.keys.get(issuer).published,
                None => 0,
            };
            self.metrics.set_published_keys(issuer, published);
        }
        if let Some(board) = &self.publish {
            for pair in 0..board.pairs().len() {
                let record = board.get(pair);
                let age = record.last_success.map(|t| now.duration_since(t).unwrap_or_default());
                self.metrics.set_publish_pair(pair, age, record.consecutive_failures);
            }
        }
        if let Some(resolver) = &self.certs {
            let set = resolver.current();
            self.metrics.set_certificates(
                set.certs
                    .iter()
                    .map(|c| (c.cert_file.display().to_string(), unix_seconds(c.not_after))),
            );
        }
        self.metrics.encode()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    crate::model::timestamp::unix_seconds_f64(t)
}
