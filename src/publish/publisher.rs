//! `Publisher`: one task per (sink, issuer) that keeps the sink holding the issuer's
//! current documents, and `publish_once` for `jwks-edge publish --once`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::cache::health::HealthBoard;
use crate::cache::store::DocumentStore;
use crate::config::Issuer;
use crate::error_chain;
use crate::model::document::DocKind;
use crate::model::DocId;
use crate::publish::layout::{Claims, Layout, LayoutError};
use crate::publish::sink::Sink;
use crate::publish::status::{Pair, PublishBoard};
use crate::publish::writer::{write, Wanted, WriteError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::publish::UploadOutcome;
use crate::upstream::refresh::schedule::{jitter, Backoff};

/// Attempts `publish --once` makes per pair before it reports the sink as failed.
const ONCE_ATTEMPTS: u32 = 3;
/// How often a publisher looks whether its issuer's first fetches are done.
const FIRST_ROUND_POLL: Duration = Duration::from_millis(50);
/// Pairs `publish --once` works on at the same time.
const ONCE_PARALLEL: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Layout(LayoutError),
    #[error(transparent)]
    Write(WriteError),
}

/// Why `publish --once` left a sink without an issuer's current documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceFailure {
    pub sink: String,
    pub issuer: String,
    pub reason: String,
}

/// Every sink and the state they are published from. Built by `App`.
pub struct Publisher {
    /// Every configured issuer, by index (`DocId::issuer`).
    pub issuers: Vec<Arc<Issuer>>,
    pub sinks: Vec<Sink>,
    /// One per sink, shared by its pairs.
    claims: Vec<Arc<Claims>>,
    /// (sink index, issuer index), in the order of `board` and the metrics' pairs.
    pairs: Vec<(usize, usize)>,
    /// Per pair: object key -> hash of what this process last wrote or found there; the
    /// comparison for a sink that may be written but not read. Only the pair's task
    /// locks its entry, never across an await.
    written: Vec<Mutex<HashMap<String, String>>>,
    pub store: Arc<DocumentStore>,
    /// Read to know when an issuer's first fetches are done, and whether they failed.
    pub health: Arc<HealthBoard>,
    pub board: Arc<PublishBoard>,
    pub metrics: Arc<Metrics>,
    /// How often a sink is compared with the current copy when nothing changed (drift,
    /// such as an object deleted by hand, is repaired within it); also the backoff's cap.
    pub period: Duration,
    /// The longest a publisher waits for its issuer's first fetches before it publishes
    /// what the store holds (a snapshot's copy, or nothing yet).
    pub first_round: Duration,
}

/// The (sink, issuer) pairs of the sinks, in config order: sinks, then their issuers.
pub fn pairs(sinks: &[Sink]) -> Vec<(usize, usize)> {
    sinks
        .iter()
        .enumerate()
        .flat_map(|(s, sink)| sink.config.issuers.iter().map(move |&i| (s, i)))
        .collect()
}

impl Publisher {
    pub fn new(
        issuers: Vec<Arc<Issuer>>,
        sinks: Vec<Sink>,
        store: Arc<DocumentStore>,
        health: Arc<HealthBoard>,
        metrics: Arc<Metrics>,
        period: Duration,
        first_round: Duration,
    ) -> Publisher {
        let pairs = pairs(&sinks);
        let board = Arc::new(PublishBoard::new(
            pairs
                .iter()
                .map(|&(s, issuer)| Pair {
                    sink: sinks[s].url().to_owned(),
                    issuer,
                })
                .collect(),
        ));
        Publisher {
            claims: sinks.iter().map(|_| Arc::default()).collect(),
            written: pairs.iter().map(|_| Mutex::default()).collect(),
            issuers,
            sinks,
            pairs,
            store,
            health,
            board,
            metrics,
            period,
            first_round,
        }
    }

    /// Starts one task per pair; dropping the set stops them (an upload cut short
    /// leaves the object as it was: object stores replace objects whole).
    pub fn spawn(self: Arc<Self>, set: &mut JoinSet<()>) {
        for pair in 0..self.pairs.len() {
            set.spawn(self.clone().keep_published(pair));
        }
    }

    /// Whether the issuer's first fetches are over: the discovery document's, and the
    /// key set's unless the discovery document failed (the key set then has no URL yet).
    fn first_round_over(&self, issuer: usize) -> bool {
        let discovery = self.health.get(DocId::discovery(issuer));
        let jwks = self.health.get(DocId::jwks(issuer));
        discovery.last_attempt.is_some() && (jwks.last_attempt.is_some() || discovery.last_error.is_some())
    }

    /// Waits, at most `first_round`, for the issuer's first fetches: what a sink is given
    /// at start is then a fresh copy rather than a snapshot about to be replaced.
    async fn first_fetches(&self, issuer: usize) {
        let deadline = tokio::time::Instant::now() + self.first_round;
        while !self.first_round_over(issuer) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(FIRST_ROUND_POLL).await;
        }
    }

    /// Brings the pair's sink up to date with the issuer's current copies: the key set
    /// first, then the discovery document; `false` when the store has no copy yet.
    async fn sync(&self, pair: usize) -> Result<bool, SyncError> {
        let (s, i) = self.pairs[pair];
        let (Some(discovery), Some(jwks)) = (self.store.get(DocId::discovery(i)), self.store.get(DocId::jwks(i)))
        else {
            return Ok(false);
        };
        let sink = &self.sinks[s];
        let issuer = &self.issuers[i];
        let layout = Layout::of(&sink.config, issuer, &discovery).map_err(SyncError::Layout)?;
        self.claims[s]
            .claim(i, &issuer.name, &layout)
            .map_err(SyncError::Layout)?;
        for object in &layout.objects {
            let doc = match object.kind {
                DocKind::Jwks => &jwks,
                DocKind::Discovery => &discovery,
            };
            let wanted = Wanted::of(doc);
            let last = self.last_written(pair, &object.key);
            let outcome = write(sink.store.as_ref(), &object.key, &wanted, last.as_deref())
                .await
                .map_err(SyncError::Write)?;
            self.lock_written(pair).insert(object.key.to_string(), wanted.hash);
            self.metrics.publish_upload(pair, outcome);
            if outcome == UploadOutcome::Written {
                info!(
                    issuer = %issuer.name,
                    sink = sink.url(),
                    document = object.kind.as_str(),
                    object = %object.key,
                    bytes = doc.body.len(),
                    "published"
                );
            }
        }
        Ok(true)
    }

    fn lock_written(&self, pair: usize) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.written[pair].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last_written(&self, pair: usize, key: &object_store::path::Path) -> Option<String> {
        self.lock_written(pair).get(key.as_ref()).cloned()
    }

    /// One attempt, recorded on the board, counted and logged; `Err` holds the reason.
    async fn attempt(&self, pair: usize) -> Result<bool, String> {
        let (s, i) = self.pairs[pair];
        let now = SystemTime::now;
        match self.sync(pair).await {
            Ok(true) => {
                if self.board.get(pair).consecutive_failures > 0 {
                    info!(issuer = %self.issuers[i].name, sink = self.sinks[s].url(), "publishing recovered");
                }
                self.board.success(pair, now());
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(err) => {
                let reason = error_chain(&err);
                self.metrics.publish_upload(pair, UploadOutcome::Failed);
                let previous = self.board.get(pair).last_error;
                let failures = self.board.failure(pair, reason.clone(), now());
                if previous.as_deref() != Some(reason.as_str()) {
                    warn!(
                        issuer = %self.issuers[i].name,
                        sink = self.sinks[s].url(),
                        consecutive_failures = failures,
                        "publishing failed, the sink keeps what it had; retrying with backoff: {reason}"
                    );
                } else {
                    debug!(issuer = %self.issuers[i].name, sink = self.sinks[s].url(), "publishing still failing: {reason}");
                }
                Err(reason)
            }
        }
    }

    /// The pair's task: publishes after the first fetches, then whenever either document
    /// is replaced, and at least every `period` (which repairs drift); after a failure,
    /// again after a backoff.
    async fn keep_published(self: Arc<Self>, pair: usize) {
        let (_, issuer) = self.pairs[pair];
        let mut discovery = self.store.changes(DocId::discovery(issuer));
        let mut jwks = self.store.changes(DocId::jwks(issuer));
        self.first_fetches(issuer).await;
        let mut backoff = Backoff::new(self.period);
        loop {
            discovery.borrow_and_update();
            jwks.borrow_and_update();
            match self.attempt(pair).await {
                Ok(_) => {
                    backoff.reset();
                    tokio::select! {
                        () = tokio::time::sleep(jitter(self.period)) => {}
                        _ = discovery.changed() => {}
                        _ = jwks.changed() => {}
                    }
                }
                // Only the backoff: the next attempt reads whatever is current then.
                Err(_) => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }

    /// `publish --once`: waits for every published issuer's first fetches, then brings
    /// every sink up to date, retrying a failing pair a few times. An issuer whose
    /// fetch failed is not written (its objects stay as they are) and is reported.
    pub async fn publish_once(self: Arc<Self>) -> Vec<OnceFailure> {
        let mut issuers: Vec<usize> = self.pairs.iter().map(|&(_, i)| i).collect();
        issuers.sort_unstable();
        issuers.dedup();
        for &issuer in &issuers {
            self.first_fetches(issuer).await;
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(ONCE_PARALLEL));
        let mut tasks = JoinSet::new();
        for pair in 0..self.pairs.len() {
            let (this, permits) = (self.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                this.once(pair).await
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(failure)) = done {
                failures.push(failure);
            }
        }
        failures.sort_by(|a, b| (&a.sink, &a.issuer).cmp(&(&b.sink, &b.issuer)));
        failures
    }

    async fn once(&self, pair: usize) -> Option<OnceFailure> {
        let (s, i) = self.pairs[pair];
        let failure = |reason: String| OnceFailure {
            sink: self.sinks[s].url().to_owned(),
            issuer: self.issuers[i].name.clone(),
            reason,
        };
        if let Some(reason) = self.upstream_failure(i) {
            return Some(failure(reason));
        }
        let mut backoff = Backoff::new(self.period);
        for attempt in 1..=ONCE_ATTEMPTS {
            match self.attempt(pair).await {
                Ok(true) => return None,
                Ok(false) => return Some(failure("no checked copy of the documents to publish".into())),
                Err(reason) if attempt == ONCE_ATTEMPTS => {
                    return Some(failure(format!("{reason} (after {ONCE_ATTEMPTS} attempts)")))
                }
                Err(_) => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
        None
    }

    /// Why this run has no fresh, checked copy of the issuer's documents, if it has not.
    fn upstream_failure(&self, issuer: usize) -> Option<String> {
        for kind in [DocKind::Discovery, DocKind::Jwks] {
            let record = self.health.get(DocId { issuer, kind });
            if let Some(err) = record.last_error {
                return Some(format!(
                    "the upstream's {} failed, nothing written: {err}",
                    kind.as_str()
                ));
            }
            if record.last_success.is_none() {
                return Some(format!(
                    "no answer for the {} within {:?}, nothing written",
                    kind.as_str(),
                    self.first_round
                ));
            }
        }
        None
    }
}
