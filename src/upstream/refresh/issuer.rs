//! `IssuerRefresh`: what one issuer's two refreshers share, and the bookkeeping every
//! fetch ends with (metrics, health, key history, snapshot).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::cache::health::{HealthBoard, Transition};
use crate::cache::key_board::KeyBoard;
use crate::cache::revalidate::Revalidations;
use crate::cache::routes::Router;
use crate::cache::snapshot::Snapshots;
use crate::cache::store::DocumentStore;
use crate::config::keys::KeyCap;
use crate::config::Issuer;
use crate::error_chain;
use crate::model::document::{CachePolicy, DocKind, Document};
use crate::model::key_event::KeyChange;
use crate::model::keys::SavedKey;
use crate::model::outcome::FetchOutcome;
use crate::model::DocId;
use crate::telemetry::metrics::Metrics;
use crate::upstream::fetch::{FetchError, Fetcher};
use crate::upstream::keyset::KeySetRules;
use crate::upstream::refresh::startup::StartupReport;
use crate::upstream::rotation::{KeyEvent, KeyRetention};

/// Everything one issuer's two refreshers share.
#[derive(Clone)]
pub struct IssuerRefresh {
    pub index: usize,
    pub issuer: Arc<Issuer>,
    pub fetcher: Fetcher,
    pub store: Arc<DocumentStore>,
    /// Where the discovery refresher publishes the key set path each document names,
    /// before storing the document; it refuses a path that belongs to another issuer.
    pub router: Arc<Router>,
    pub health: Arc<HealthBoard>,
    pub snapshots: Option<Snapshots>,
    pub policy: CachePolicy,
    pub keep_removed_keys: Duration,
    /// The most keys of each type retention may bring the published set to.
    pub key_cap: KeyCap,
    /// Hygiene, key policy and pre-published keys, between the fetch and retention.
    pub key_rules: Arc<KeySetRules>,
    /// Where the key set refresher shows its keys' history to the admin listener.
    pub key_board: Arc<KeyBoard>,
    /// The key history `restore` read from the snapshot, for the key set refresher to
    /// go on from; `None` until then.
    pub restored_keys: Option<KeyRetention>,
    pub metrics: Arc<Metrics>,
    /// Requests poke the key set refresher through this; it tells the limiter when each
    /// of its fetches ended.
    pub revalidation: Arc<Revalidations>,
    /// Every refresher reports its document's first fetch here, which logs the start-up
    /// failures as one line per kind instead of one per document.
    pub startup: Arc<StartupReport>,
}

impl IssuerRefresh {
    pub(super) fn id(&self, kind: DocKind) -> DocId {
        DocId {
            issuer: self.index,
            kind,
        }
    }

    pub(super) fn new_retention(&self) -> KeyRetention {
        KeyRetention::new(self.keep_removed_keys, self.key_cap, &self.issuer.withdrawn_kids)
    }

    /// Logs and counts each change to the keys, and shows their history to the admin side.
    pub(super) fn note_keys(&self, retention: &KeyRetention, events: &[KeyEvent]) {
        for event in events {
            event.log(&self.issuer.name);
            self.metrics.key_event(self.index, event.kind());
        }
        let now = SystemTime::now();
        self.key_board.note(
            self.index,
            events.iter().map(|event| KeyChange {
                at: now,
                kind: event.kind(),
                kid: event.kid().map(str::to_owned),
            }),
        );
        self.key_board.set(self.index, retention.summary());
    }

    /// Runs one fetch and counts its outcome and duration.
    pub(super) async fn measured<T>(
        &self,
        kind: DocKind,
        fetch: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        let started = tokio::time::Instant::now();
        let result = fetch.await;
        let outcome = result.as_ref().map_or_else(FetchError::outcome, |_| FetchOutcome::Ok);
        self.metrics.fetch(self.id(kind), outcome, started.elapsed());
        result
    }

    /// Records the success of a document just stored and writes its snapshot (a key
    /// set's with its keys' history).
    pub(super) async fn accept(
        &self,
        doc: &Document,
        snapshot_body: Bytes,
        keys: Option<Vec<SavedKey>>,
        snapshot_failing: &mut bool,
    ) {
        let id = self.id(doc.kind);
        let fetched_at = doc.fetched_at;
        if self.health.success(id, fetched_at) == Transition::Recovered {
            info!(issuer = %self.issuer.name, document = id.kind.as_str(), "upstream recovered");
        }
        debug!(issuer = %self.issuer.name, document = id.kind.as_str(), bytes = doc.body.len(), "refreshed");
        self.save_snapshot(id.kind, snapshot_body, fetched_at, keys, snapshot_failing)
            .await;
    }

    /// Writes a document's snapshot; logs the first failure of a series.
    pub(super) async fn save_snapshot(
        &self,
        kind: DocKind,
        body: Bytes,
        fetched_at: SystemTime,
        keys: Option<Vec<SavedKey>>,
        snapshot_failing: &mut bool,
    ) {
        let Some(snapshots) = self.snapshots.clone() else {
            return;
        };
        let issuer = self.issuer.clone();
        let id = self.id(kind);
        let saved =
            tokio::task::spawn_blocking(move || snapshots.save(&issuer, id.kind, &body, fetched_at, keys.as_deref()))
                .await;
        match saved {
            Ok(Ok(())) => *snapshot_failing = false,
            Ok(Err(err)) if !*snapshot_failing => {
                *snapshot_failing = true;
                warn!(issuer = %self.issuer.name, document = id.kind.as_str(), "cannot write snapshot: {}", error_chain(&err));
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }

    /// Records a failed fetch; logs it when the document's state changes, unless the
    /// start-up report has it (`summarized`).
    pub(super) fn reject(&self, kind: DocKind, url: &str, err: &FetchError, summarized: bool) {
        let reason = error_chain(err);
        let transition = self.health.failure(self.id(kind), reason.clone(), SystemTime::now());
        if transition == Transition::Failing && !summarized {
            warn!(
                issuer = %self.issuer.name,
                document = kind.as_str(),
                url,
                reason = err.outcome().as_str(),
                "upstream fetch failed, keeping the last good copy: {reason}"
            );
        } else {
            debug!(issuer = %self.issuer.name, document = kind.as_str(), "upstream still failing: {reason}");
        }
    }
}
