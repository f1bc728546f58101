//! `Survey` and `IssuerView`: every issuer's state as the lower layers keep it, read once
//! per request; `/readyz` renders it as JSON and the status page as HTML, so the two
//! never disagree.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cache::health::{FetchRecord, Mark, TIMELINE};
use crate::model::document::{DocKind, Freshness};
use crate::model::key_event::KeyChange;
use crate::model::keys::KeySummary;
use crate::model::DocId;
use crate::ops::admin::Admin;
use crate::telemetry::reach::Reach;

/// Why an issuer needs attention, most urgent last (so the greatest sorts first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Attention {
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

impl Attention {
    /// The `attention` of `/readyz`'s issuers, and the page's CSS class.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Attention::None => "ok",
            Attention::Failing => "failing",
            Attention::Stale => "stale",
            Attention::Mismatch => "issuer_mismatch",
            Attention::Unservable => "unservable",
        }
    }

    /// What the page says.
    pub(super) fn label(self) -> &'static str {
        match self {
            Attention::Mismatch => "issuer mismatch",
            other => other.as_str(),
        }
    }
}

/// A document's state: the index of `Survey::states`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DocState {
    Fresh = 0,
    Stale = 1,
    Expired = 2,
    Missing = 3,
}

impl DocState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DocState::Fresh => "fresh",
            DocState::Stale => "stale",
            DocState::Expired => "expired",
            DocState::Missing => "missing",
        }
    }
}

/// What every issuer's documents are, counted, and each issuer's attention.
pub(super) struct Survey {
    pub documents: usize,
    pub servable: usize,
    /// Documents by state, indexed by `DocState`.
    pub states: [usize; 4],
    /// Issuers needing attention.
    pub attention: usize,
    /// Fresh if every servable document is fresh, else stale.
    pub worst: Freshness,
    /// Every surveyed issuer (index) and its attention, in config order.
    pub ranked: Vec<(Attention, usize)>,
}

/// One document in full.
pub(super) struct DocView {
    pub kind: DocKind,
    pub state: DocState,
    pub fetched_at: Option<SystemTime>,
    pub age: Option<Duration>,
    pub record: FetchRecord,
    /// The fetch outcomes of the last `TIMELINE`, oldest first.
    pub timeline: Vec<Mark>,
    pub reach: Reach,
}

impl DocView {
    pub(super) fn servable(&self) -> bool {
        matches!(self.state, DocState::Fresh | DocState::Stale)
    }
}

/// One issuer in full: what `/readyz?issuer=` and the page's issuer detail show.
pub(super) struct IssuerView {
    pub index: usize,
    pub attention: Attention,
    pub discovery: DocView,
    pub jwks: DocView,
    /// The `issuer` the upstream states, while it differs from `public_url`.
    pub mismatch: Option<String>,
    pub keys: Arc<KeySummary>,
    /// The latest changes to the published keys since start, newest first.
    pub key_changes: Vec<KeyChange>,
}

impl IssuerView {
    pub(super) fn servable(&self) -> bool {
        self.discovery.servable() && self.jwks.servable()
    }
}

impl Admin {
    /// One document's freshness and state, cheaply.
    fn document_state(&self, id: DocId, now: SystemTime) -> (Freshness, DocState) {
        match self.store.get(id) {
            None => (Freshness::Expired, DocState::Missing),
            Some(doc) => match self.policy.freshness(doc.fetched_at, now) {
                Freshness::Fresh => (Freshness::Fresh, DocState::Fresh),
                Freshness::Stale => (Freshness::Stale, DocState::Stale),
                Freshness::Expired => (Freshness::Expired, DocState::Expired),
            },
        }
    }

    /// Every document's state (of one issuer, or of all), how many can be served, and
    /// each issuer's attention; cheap per issuer, so it scales to thousands.
    pub(super) fn survey(&self, only: Option<usize>, now: SystemTime) -> Survey {
        let mut survey = Survey {
            documents: 0,
            servable: 0,
            states: [0; 4],
            attention: 0,
            worst: Freshness::Fresh,
            ranked: Vec::new(),
        };
        for i in 0..self.issuers.len() {
            if only.is_some_and(|only| only != i) {
                continue;
            }
            let mut attention = Attention::None;
            for id in [DocId::discovery(i), DocId::jwks(i)] {
                let (freshness, state) = self.document_state(id, now);
                survey.documents += 1;
                survey.states[state as usize] += 1;
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
            survey.ranked.push((attention, i));
        }
        survey
    }

    /// One document in full.
    fn doc_view(&self, id: DocId, now: SystemTime) -> DocView {
        let doc = self.store.get(id);
        let (_, state) = self.document_state(id, now);
        DocView {
            kind: id.kind,
            state,
            fetched_at: doc.as_ref().map(|d| d.fetched_at),
            age: doc
                .as_ref()
                .map(|d| now.duration_since(d.fetched_at).unwrap_or_default()),
            record: self.health.get(id),
            timeline: self
                .health
                .recent(id, now.checked_sub(TIMELINE).unwrap_or(SystemTime::UNIX_EPOCH)),
            reach: self.reach.get(id),
        }
    }

    /// One issuer's documents, keys and issuer check, in full.
    pub(super) fn issuer_view(&self, index: usize, attention: Attention, now: SystemTime) -> IssuerView {
        let discovery = self.doc_view(DocId::discovery(index), now);
        IssuerView {
            index,
            attention,
            mismatch: discovery.record.issuer_mismatch.clone(),
            discovery,
            jwks: self.doc_view(DocId::jwks(index), now),
            keys: self.keys.get(index),
            key_changes: self.keys.changes(index),
        }
    }
}
