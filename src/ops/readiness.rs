//! `/readyz`: whether this process can serve, a summary of the issuers' states (or each
//! issuer's documents, keys and certificates on request) as the lower layers keep them.

use std::time::SystemTime;

use serde_json::json;

use crate::config::Readiness;
use crate::model::document::Freshness;
use crate::model::keys::KeySummary;
use crate::ops::admin::Admin;
use crate::ops::survey::{Attention, DocView, IssuerView, Survey};
use crate::telemetry::reach::Reach;

/// How much of each issuer `/readyz` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Counts by state, and the issuers needing attention (at most `ATTENTION_LISTED`).
    Summary,
    /// Every issuer, in config order.
    Full,
}

impl Detail {
    /// The `?detail=` value: `summary` (the default) or `full`.
    pub fn parse(value: Option<&str>) -> Option<Detail> {
        match value {
            None | Some("summary") => Some(Detail::Summary),
            Some("full") => Some(Detail::Full),
            Some(_) => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Detail::Summary => "summary",
            Detail::Full => "full",
        }
    }
}

/// How many issuers the summary lists: enough to name the trouble when an IdP goes down
/// under a thousand issuers, few enough that the answer stays a few kilobytes.
const ATTENTION_LISTED: usize = 20;

/// A document's relying-party requests: totals, and each family that asked.
fn reach_report(reach: &Reach) -> serde_json::Value {
    let families: Vec<_> = reach
        .families
        .iter()
        .map(|f| json!({"family": f.family.as_str(), "requests": f.requests, "last_seen": rfc3339(Some(f.last_seen))}))
        .collect();
    json!({
        "requests": reach.requests(),
        "last_seen": rfc3339(reach.last_seen()),
        "stale_served": reach.stale,
        "unavailable_served": reach.unavailable,
        "families": families,
    })
}

pub(super) fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(crate::model::timestamp::rfc3339_seconds(t).to_string())
    })
}

impl Admin {
    /// The certificates being served, the last refused reload, and with ACME each
    /// certificate's renewal state; then whether every configured name has a valid
    /// certificate, and whether any has (without one, no HTTPS handshake succeeds).
    pub(super) fn tls(&self, now: SystemTime) -> (bool, bool, serde_json::Value) {
        let Some(resolver) = &self.certs else {
            return (true, true, serde_json::Value::Null);
        };
        let certificates: Vec<_> = resolver
            .current()
            .certs
            .iter()
            .map(|c| {
                json!({
                    "file": c.cert_file.display().to_string(),
                    "names": c.names,
                    "not_after": rfc3339(Some(c.not_after)),
                })
            })
            .collect();
        let mut body = json!({"certificates": certificates, "last_reload_error": resolver.last_error()});
        let Some(acme) = &self.acme else {
            return (true, true, body);
        };
        let (mut all, mut any) = (true, false);
        let records: Vec<_> = acme
            .records()
            .iter()
            .map(|r| {
                let state = r.state(now);
                let valid = state.serves();
                all &= valid;
                any |= valid;
                json!({
                    "names": r.names,
                    "state": state.as_str(),
                    "not_after": rfc3339(r.not_after),
                    "renew_at": rfc3339(r.renew_at),
                    "last_attempt": rfc3339(r.last_attempt),
                    "last_error": r.last_error,
                    "consecutive_failures": r.consecutive_failures,
                    "next_attempt": rfc3339(r.next_attempt),
                })
            })
            .collect();
        body["acme"] = json!({
            "directory": acme.directory,
            "challenge": acme.challenge.as_str(),
            "certificates": records,
        });
        (all, any, body)
    }

    /// One document's state as `/readyz` reports it.
    fn document(&self, view: &DocView) -> serde_json::Value {
        let record = &view.record;
        json!({
            "state": view.state.as_str(),
            "age_seconds": view.age.map(|age| age.as_secs()),
            "fetched_at": rfc3339(view.fetched_at),
            "last_success": rfc3339(record.last_success),
            "last_attempt": rfc3339(record.last_attempt),
            "last_error": record.last_error,
            "last_error_at": rfc3339(record.last_error_at),
            "consecutive_failures": record.consecutive_failures,
            "failures_total": record.failures_total,
            "timeline": {
                "ok": view.timeline.iter().filter(|m| m.ok).count(),
                "failed": view.timeline.iter().filter(|m| !m.ok).count(),
            },
            "relying_parties": reach_report(&view.reach),
        })
    }

    /// The issuer's keys: the published ones (`current`, `retained`) and the `withdrawn`
    /// ones the upstream lists, with their history.
    fn keys_report(&self, summary: &KeySummary) -> serde_json::Value {
        let keys: Vec<_> = summary
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "kty": k.kty,
                    "state": k.state.as_str(),
                    "first_seen": rfc3339(Some(k.first_seen)),
                    "last_seen_upstream": rfc3339(Some(k.last_seen_upstream)),
                    "removed_at": rfc3339(k.removed_at),
                    "expires_at": rfc3339(k.expires_at),
                })
            })
            .collect();
        json!(keys)
    }

    /// The issuers `/readyz` lists: all of them (`Full`), or with `Summary` those needing
    /// attention, most urgent first, at most `ATTENTION_LISTED`.
    fn listed(&self, survey: &Survey, detail: Detail, now: SystemTime) -> Vec<serde_json::Value> {
        let mut shown: Vec<_> = survey
            .ranked
            .iter()
            .copied()
            .filter(|&(attention, _)| detail == Detail::Full || attention != Attention::None)
            .collect();
        if detail == Detail::Summary {
            // Stable: equally urgent issuers stay in config order.
            shown.sort_by_key(|&(attention, _)| std::cmp::Reverse(attention));
            shown.truncate(ATTENTION_LISTED);
        }
        shown
            .into_iter()
            .map(|(attention, i)| self.issuer_report(&self.issuer_view(i, attention, now)))
            .collect()
    }

    /// One issuer's documents, keys and issuer check, in full.
    fn issuer_report(&self, view: &IssuerView) -> serde_json::Value {
        let issuer = &self.issuers[view.index];
        let mismatch = view
            .mismatch
            .as_ref()
            .map(|upstream| json!({"upstream_issuer": upstream, "public_url": issuer.public_url}));
        json!({
            "name": issuer.name,
            "servable": view.servable(),
            "attention": view.attention.as_str(),
            "issuer_mismatch": mismatch,
            "discovery": self.document(&view.discovery),
            "jwks": self.document(&view.jwks),
            "keys": self.keys_report(&view.keys),
            "key_changes": view.key_changes.iter().map(|c| json!({
                "at": rfc3339(Some(c.at)),
                "event": c.kind.as_str(),
                "kid": c.kid,
            })).collect::<Vec<_>>(),
            "publish": self.publish_report(view.index),
        })
    }

    /// The issuer's sinks: when each last held the current documents, its last error
    /// and how many attempts in a row failed. Empty without `[[publish]]`.
    fn publish_report(&self, issuer: usize) -> serde_json::Value {
        let Some(board) = &self.publish else {
            return json!([]);
        };
        let sinks: Vec<_> = board
            .of_issuer(issuer)
            .into_iter()
            .map(|(pair, record)| {
                json!({
                    "sink": pair.sink,
                    "last_success": rfc3339(record.last_success),
                    "last_error": record.last_error,
                    "last_error_at": rfc3339(record.last_error_at),
                    "consecutive_failures": record.consecutive_failures,
                })
            })
            .collect();
        json!(sinks)
    }

    /// The process's readiness: during start-up (see `Startup`) 503 `starting`; then,
    /// with `admin.readiness = "any"`, 200 while at least one document can be served
    /// (`degraded` when some cannot), and with `"all"` only while every one can.
    /// `status` is `starting`, `fresh`, `stale`, `degraded` or `unavailable`.
    pub(super) fn readiness(&self, detail: Detail) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let survey = self.survey(None, now);
        let listed = self.listed(&survey, detail, now);
        let (tls_all, tls_any, tls) = self.tls(now);
        let (ready, status) = self.verdict(&survey, tls_all, tls_any);
        let body = json!({
            "ready": ready,
            "status": status,
            "mode": self.readiness.as_str(),
            "documents": survey.documents,
            "servable": survey.servable,
            "document_states": {
                "fresh": survey.states[0],
                "stale": survey.states[1],
                "expired": survey.states[2],
                "missing": survey.states[3],
            },
            "detail": detail.as_str(),
            "issuers_total": self.issuers.len(),
            "issuers_needing_attention": survey.attention,
            "issuers_omitted": survey.attention.saturating_sub(listed.len()),
            "issuers": listed,
            "tls": tls,
            "publish": self.publish.as_ref().map(|board| json!({
                "sinks": board.pairs().iter().map(|p| p.sink.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
                "sinks_failing": board.failing_sinks(),
            })),
        });
        (ready, body)
    }

    /// Whether the process is ready, and its `status`, from the survey of every issuer
    /// and whether every (`tls_all`) or any (`tls_any`) certificate is valid.
    pub(super) fn verdict(&self, survey: &Survey, tls_all: bool, tls_any: bool) -> (bool, &'static str) {
        let all_servable = survey.servable == survey.documents;
        let settled = match survey.worst {
            Freshness::Stale => "stale",
            _ => "fresh",
        };
        if !self.startup.over(all_servable) {
            return (false, "starting");
        }
        match self.readiness {
            Readiness::All if all_servable && tls_all => (true, settled),
            Readiness::All => (false, "unavailable"),
            Readiness::Any if survey.servable == 0 || !tls_any => (false, "unavailable"),
            Readiness::Any if !all_servable || !tls_all => (true, "degraded"),
            Readiness::Any => (true, settled),
        }
    }

    /// `/readyz?issuer=NAME`: 200 while both of the issuer's documents can be served and
    /// its upstream's `issuer` is the public URL, 503 otherwise; for monitors and
    /// external probes, never for taking a replica out of service.
    pub(super) fn issuer_readiness(&self, index: usize) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let survey = self.survey(Some(index), now);
        let view = self.issuer_view(index, survey.ranked[0].0, now);
        let (ready, status) = if !view.servable() {
            (false, "unavailable")
        } else if view.mismatch.is_some() {
            (false, "issuer_mismatch")
        } else if survey.worst == Freshness::Stale {
            (true, "stale")
        } else {
            (true, "fresh")
        };
        (
            ready,
            json!({"ready": ready, "status": status, "issuers": [self.issuer_report(&view)]}),
        )
    }
}
