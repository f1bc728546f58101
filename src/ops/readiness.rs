//! `/readyz`: whether this process can serve, a summary of the issuers' states (or each
//! issuer's documents, keys and certificates on request) as the lower layers keep them.

use std::time::SystemTime;

use serde_json::json;

use crate::config::Readiness;
use crate::model::document::Freshness;
use crate::model::DocId;
use crate::ops::admin::Admin;

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

/// Why an issuer needs attention, most urgent last (so the greatest sorts first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Attention {
    None,
    /// Fresh copies, but the last refresh failed.
    Failing,
    /// Served from a stale copy.
    Stale,
    /// Served, but relying parties refuse its tokens.
    Mismatch,
    /// A document cannot be served.
    Unservable,
}

/// What `/readyz` found, document by document.
struct Survey {
    issuers: Vec<serde_json::Value>,
    documents: usize,
    servable: usize,
    /// Documents by state: fresh, stale, expired, missing.
    states: [usize; 4],
    /// Issuers needing attention, listed or not.
    attention: usize,
    /// Fresh if every servable document is fresh, else stale.
    worst: Freshness,
}

fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(crate::model::timestamp::rfc3339_seconds(t).to_string())
    })
}

impl Admin {
    /// The certificates being served, the last refused reload, and with ACME each
    /// certificate's renewal state; then whether every configured name has a valid
    /// certificate, and whether any has (without one, no HTTPS handshake succeeds).
    fn tls(&self, now: SystemTime) -> (bool, bool, serde_json::Value) {
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

    /// One document's freshness and state (an index of `Survey::states`), cheaply.
    fn document_state(&self, id: DocId, now: SystemTime) -> (Freshness, usize) {
        match self.store.get(id) {
            None => (Freshness::Expired, 3),
            Some(doc) => match self.policy.freshness(doc.fetched_at, now) {
                Freshness::Fresh => (Freshness::Fresh, 0),
                Freshness::Stale => (Freshness::Stale, 1),
                Freshness::Expired => (Freshness::Expired, 2),
            },
        }
    }

    /// One document's state as `/readyz` reports it, and whether it can be served.
    fn document(&self, id: DocId, now: SystemTime) -> (Freshness, serde_json::Value) {
        let doc = self.store.get(id);
        let freshness = doc
            .as_ref()
            .map_or(Freshness::Expired, |d| self.policy.freshness(d.fetched_at, now));
        let state = match (&doc, freshness) {
            (None, _) => "missing",
            (Some(_), Freshness::Fresh) => "fresh",
            (Some(_), Freshness::Stale) => "stale",
            (Some(_), Freshness::Expired) => "expired",
        };
        let record = self.health.get(id);
        let body = json!({
            "state": state,
            "age_seconds": doc.as_ref().map(|d| now.duration_since(d.fetched_at).unwrap_or_default().as_secs()),
            "fetched_at": rfc3339(doc.as_ref().map(|d| d.fetched_at)),
            "last_success": rfc3339(record.last_success),
            "last_attempt": rfc3339(record.last_attempt),
            "last_error": record.last_error,
            "last_error_at": rfc3339(record.last_error_at),
            "consecutive_failures": record.consecutive_failures,
            "failures_total": record.failures_total,
        });
        (freshness, body)
    }

    /// The issuer's keys: the published ones (`current`, `retained`) and the `withdrawn`
    /// ones the upstream lists, with their history.
    fn keys_report(&self, issuer: usize) -> serde_json::Value {
        let summary = self.keys.get(issuer);
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

    /// Every document's state (of one issuer, or of all) and how many can be served;
    /// the issuers shown are all of them (`Full`, or `only`), or with `Summary` those
    /// needing attention, most urgent first, at most `ATTENTION_LISTED`.
    fn survey(&self, only: Option<usize>, detail: Detail, now: SystemTime) -> Survey {
        let mut survey = Survey {
            issuers: Vec::new(),
            documents: 0,
            servable: 0,
            states: [0; 4],
            attention: 0,
            worst: Freshness::Fresh,
        };
        let mut shown = Vec::new();
        for i in 0..self.issuers.len() {
            if only.is_some_and(|only| only != i) {
                continue;
            }
            let mut attention = Attention::None;
            for id in [DocId::discovery(i), DocId::jwks(i)] {
                let (freshness, state) = self.document_state(id, now);
                survey.documents += 1;
                survey.states[state] += 1;
                let record = self.health.get(id);
                let failing = record.consecutive_failures > 0 || record.last_error.is_some();
                let mismatch = record.issuer_mismatch.is_some();
                let concern = match freshness {
                    Freshness::Expired => Attention::Unservable,
                    Freshness::Stale => {
                        survey.servable += 1;
                        survey.worst = Freshness::Stale;
                        Attention::Stale
                    }
                    Freshness::Fresh => {
                        survey.servable += 1;
                        Attention::None
                    }
                };
                let concern = concern
                    .max(if mismatch { Attention::Mismatch } else { Attention::None })
                    .max(if failing { Attention::Failing } else { Attention::None });
                attention = attention.max(concern);
            }
            if attention != Attention::None {
                survey.attention += 1;
            }
            if only.is_some() || detail == Detail::Full || attention != Attention::None {
                shown.push((attention, i));
            }
        }
        if only.is_none() && detail == Detail::Summary {
            // Stable: equally urgent issuers stay in config order.
            shown.sort_by_key(|&(attention, _)| std::cmp::Reverse(attention));
            shown.truncate(ATTENTION_LISTED);
        }
        survey.issuers = shown.into_iter().map(|(_, i)| self.issuer_report(i, now)).collect();
        survey
    }

    /// One issuer's documents, keys and issuer check, in full.
    fn issuer_report(&self, i: usize, now: SystemTime) -> serde_json::Value {
        let issuer = &self.issuers[i];
        let (discovery_freshness, discovery) = self.document(DocId::discovery(i), now);
        let (jwks_freshness, jwks) = self.document(DocId::jwks(i), now);
        let mismatch = self
            .health
            .get(DocId::discovery(i))
            .issuer_mismatch
            .map(|upstream| json!({"upstream_issuer": upstream, "public_url": issuer.public_url}));
        json!({
            "name": issuer.name,
            "servable": discovery_freshness != Freshness::Expired && jwks_freshness != Freshness::Expired,
            "issuer_mismatch": mismatch,
            "discovery": discovery,
            "jwks": jwks,
            "keys": self.keys_report(i),
            "publish": self.publish_report(i),
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
        let survey = self.survey(None, detail, now);
        let all_servable = survey.servable == survey.documents;
        let (tls_all, tls_any, tls) = self.tls(now);
        let settled = match survey.worst {
            Freshness::Stale => "stale",
            _ => "fresh",
        };
        let (ready, status) = if !self.startup.over(all_servable) {
            (false, "starting")
        } else {
            match self.readiness {
                Readiness::All if all_servable && tls_all => (true, settled),
                Readiness::All => (false, "unavailable"),
                Readiness::Any if survey.servable == 0 || !tls_any => (false, "unavailable"),
                Readiness::Any if !all_servable || !tls_all => (true, "degraded"),
                Readiness::Any => (true, settled),
            }
        };
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
            "issuers_omitted": survey.attention.saturating_sub(survey.issuers.len()),
            "issuers": survey.issuers,
            "tls": tls,
            "publish": self.publish.as_ref().map(|board| json!({
                "sinks": board.pairs().iter().map(|p| p.sink.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
                "sinks_failing": board.failing_sinks(),
            })),
        });
        (ready, body)
    }

    /// `/readyz?issuer=NAME`: 200 while both of the issuer's documents can be served and
    /// its upstream's `issuer` is the public URL, 503 otherwise; for monitors and
    /// external probes, never for taking a replica out of service.
    pub(super) fn issuer_readiness(&self, index: usize) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let survey = self.survey(Some(index), Detail::Full, now);
        let report = &survey.issuers[0];
        let (ready, status) = if survey.servable < survey.documents {
            (false, "unavailable")
        } else if !report["issuer_mismatch"].is_null() {
            (false, "issuer_mismatch")
        } else if survey.worst == Freshness::Stale {
            (true, "stale")
        } else {
            (true, "fresh")
        };
        (
            ready,
            json!({"ready": ready, "status": status, "issuers": survey.issuers}),
        )
    }
}
