//! Refresher tasks: the only code that fetches, validates and stores documents.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::cache::health::{HealthBoard, Transition};
use crate::cache::key_board::KeyBoard;
use crate::cache::revalidate::Revalidations;
use crate::cache::routes::Router;
use crate::cache::snapshot::Snapshots;
use crate::cache::store::DocumentStore;
use crate::config::keys::KeyCap;
use crate::config::Issuer;
use crate::error_chain;
use crate::model::document::{CachePolicy, DocKind, Document, Freshness};
use crate::model::keys::SavedKey;
use crate::model::DocId;
use crate::telemetry::metrics::Metrics;
use crate::upstream::checks::ValidationError;
use crate::upstream::fetch::{FetchError, Fetcher};
use crate::upstream::keyset::KeySetRules;
use crate::upstream::rewrite::rewrite_discovery;
use crate::upstream::rotation::{DropRefused, KeyEvent, KeyRetention};

/// First retry delay after a failed fetch; doubles up to the refresh period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

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
}

/// Asks a refresher to fetch at once; it answers with the outcome.
pub type RefreshRequest = oneshot::Sender<Result<(), String>>;

/// Asks a key set refresher to stop publishing its retained keys now; it answers, once
/// the published copy (and its snapshot) no longer holds them, with their `kid`s.
pub type DropRequest = oneshot::Sender<Result<Vec<Option<String>>, DropRefused>>;

/// The way to one issuer's refreshers, for `POST /admin/refresh` and
/// `POST /admin/drop-retained`.
#[derive(Clone, Debug)]
pub struct RefreshControl {
    pub name: String,
    pub discovery: mpsc::Sender<RefreshRequest>,
    pub jwks: mpsc::Sender<RefreshRequest>,
    pub drop_retained: mpsc::Sender<DropRequest>,
}

/// Starts both refreshers of every issuer. Dropping the set stops them; a fetch cut short
/// this way loses nothing, since only complete, validated documents are ever stored, and
/// snapshots are replaced by rename.
pub fn spawn_all(issuers: Vec<IssuerRefresh>) -> (JoinSet<()>, Vec<RefreshControl>) {
    let mut set = JoinSet::new();
    let mut controls = Vec::with_capacity(issuers.len());
    for issuer in issuers {
        let (discovery, discovery_requests) = mpsc::channel(4);
        let (jwks, jwks_requests) = mpsc::channel(4);
        let (drop_retained, drop_requests) = mpsc::channel(4);
        controls.push(RefreshControl {
            name: issuer.issuer.name.clone(),
            discovery,
            jwks,
            drop_retained,
        });
        set.spawn(issuer.clone().refresh_discovery(discovery_requests));
        set.spawn(issuer.refresh_jwks(jwks_requests, drop_requests));
    }
    (set, controls)
}

/// 90–100 % of `period`, so that replicas and documents drift apart without ever
/// waiting longer than the period itself.
fn jitter(period: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let permille = 900 + (random % 101);
    period * permille as u32 / 1000
}

/// Exponential backoff from `FIRST_RETRY`, capped at the refresh period.
struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(cap: Duration) -> Backoff {
        Backoff {
            next: FIRST_RETRY.min(cap),
            cap,
        }
    }

    fn reset(&mut self) {
        self.next = FIRST_RETRY.min(self.cap);
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        jitter(delay)
    }
}

/// The public discovery document for an upstream answer fetched at `fetched_at`, and
/// the `issuer` it states (which should be the configured public URL).
fn discovery_document(
    issuer: &Issuer,
    upstream: &[u8],
    fetched_at: SystemTime,
    policy: &CachePolicy,
) -> Result<(Document, String), ValidationError> {
    let public = rewrite_discovery(issuer, upstream)?;
    let doc = Document::new(DocKind::Discovery, public.body, fetched_at, Some(public.jwks), policy);
    Ok((doc, public.issuer))
}

/// The public key set document for a key set read back from a snapshot: checked and
/// shaped by `keys` again, since the file or the rules may have changed since.
fn jwks_document(
    body: Bytes,
    fetched_at: SystemTime,
    policy: &CachePolicy,
    keys: &KeySetRules,
    discovery: Option<&[u8]>,
) -> Result<Document, ValidationError> {
    let body = keys.build(body, discovery)?;
    Ok(Document::new(DocKind::Jwks, body, fetched_at, None, policy))
}

impl IssuerRefresh {
    fn id(&self, kind: DocKind) -> DocId {
        DocId {
            issuer: self.index,
            kind,
        }
    }

    /// Puts the snapshots of this issuer's documents in the store; called before any
    /// listener accepts. Unusable snapshots are logged and skipped, never fatal. The key
    /// set is rebuilt from its saved history first: withdrawn keys and retained keys
    /// whose time is up are not served even once.
    pub fn restore(&mut self) {
        let Some(snapshots) = self.snapshots.clone() else {
            return;
        };
        for kind in [DocKind::Discovery, DocKind::Jwks] {
            let snapshot = match snapshots.load(&self.issuer, kind) {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => continue,
                Err(err) => {
                    warn!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot ignored: {}", error_chain(&err));
                    continue;
                }
            };
            if self.policy.freshness(snapshot.fetched_at, SystemTime::now()) == Freshness::Expired {
                info!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot older than stale_if_error, not served");
                continue;
            }
            let stored = match kind {
                DocKind::Discovery => {
                    discovery_document(&self.issuer, &snapshot.body, snapshot.fetched_at, &self.policy)
                        .map_err(|e| e.to_string())
                        .and_then(|(doc, upstream_issuer)| {
                            self.note_issuer(&upstream_issuer);
                            self.router.claim(self.index, doc.jwks.as_ref())?;
                            self.store.put(self.id(DocKind::Discovery), Arc::new(doc));
                            Ok(())
                        })
                }
                DocKind::Jwks => self.restore_jwks(&snapshot),
            };
            match stored {
                Ok(()) => {
                    info!(
                        issuer = %self.issuer.name,
                        document = kind.as_str(),
                        fetched_at = %crate::model::timestamp::rfc3339_seconds(snapshot.fetched_at),
                        "serving snapshot until the upstream answers"
                    );
                }
                Err(err) => {
                    warn!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot ignored: {err}");
                }
            }
        }
    }

    fn new_retention(&self) -> KeyRetention {
        KeyRetention::new(self.keep_removed_keys, self.key_cap, &self.issuer.withdrawn_kids)
    }

    /// Restores the key history saved with the key set, and serves what it leaves.
    fn restore_jwks(&mut self, snapshot: &crate::cache::snapshot::Snapshot) -> Result<(), String> {
        let mut retention = self.new_retention();
        let events = retention.restore(
            &snapshot.body,
            snapshot.fetched_at,
            snapshot.keys.as_deref(),
            SystemTime::now(),
        );
        let Some(body) = retention.body() else {
            self.note_keys(&retention, &events);
            self.restored_keys = Some(retention);
            return Err("every key in it is withdrawn or has expired: nothing to publish".to_owned());
        };
        let discovery = self.store.get(self.id(DocKind::Discovery));
        let discovery = discovery.as_ref().map(|d| &d.body[..]);
        let doc = jwks_document(body, snapshot.fetched_at, &self.policy, &self.key_rules, discovery)
            .map_err(|e| e.to_string())?;
        self.store.put(self.id(DocKind::Jwks), Arc::new(doc));
        self.note_keys(&retention, &events);
        self.restored_keys = Some(retention);
        Ok(())
    }

    /// Logs and counts each change to the keys, and shows their history to the admin side.
    fn note_keys(&self, retention: &KeyRetention, events: &[KeyEvent]) {
        for event in events {
            event.log(&self.issuer.name);
            self.metrics.key_event(self.index, event.as_str());
        }
        self.key_board.set(self.index, retention.summary());
    }

    /// Publishes the key set again after retained keys left it between fetches (a timer,
    /// or `POST /admin/drop-retained`): same upstream copy, same fetch time.
    async fn republish(&self, retention: &KeyRetention, events: &[KeyEvent], snapshot_failing: &mut bool) {
        self.note_keys(retention, events);
        let id = self.id(DocKind::Jwks);
        let Some(current) = self.store.get(id) else {
            return;
        };
        match retention.body() {
            Some(body) => {
                let doc = Document::new(DocKind::Jwks, body.clone(), current.fetched_at, None, &self.policy);
                self.store.put(id, Arc::new(doc));
                self.save_snapshot(
                    DocKind::Jwks,
                    body,
                    current.fetched_at,
                    Some(retention.saved()),
                    snapshot_failing,
                )
                .await;
            }
            None => {
                // Only withdrawn keys upstream, and the last retained one just expired.
                self.store.clear(id);
                warn!(issuer = %self.issuer.name, "key set no longer served: every key is withdrawn or has expired");
            }
        }
    }

    /// Answers `POST /admin/drop-retained` once the published copy no longer holds them.
    async fn drop_retained(&self, retention: &mut KeyRetention, reply: DropRequest, snapshot_failing: &mut bool) {
        let outcome = retention.drop_retained();
        if let Ok(events) = &outcome {
            if !events.is_empty() {
                self.republish(retention, events, snapshot_failing).await;
            }
        }
        let dropped = outcome.map(|events| {
            events
                .into_iter()
                .filter_map(|e| match e {
                    KeyEvent::Expired { kid, .. } => Some(kid),
                    _ => None,
                })
                .collect()
        });
        let _ = reply.send(dropped);
    }

    /// Runs one fetch and counts its outcome and duration.
    async fn measured<T>(
        &self,
        kind: DocKind,
        fetch: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        let started = tokio::time::Instant::now();
        let result = fetch.await;
        let outcome = result.as_ref().map_or_else(FetchError::as_str, |_| "ok");
        self.metrics.fetch(self.id(kind), outcome, started.elapsed());
        result
    }

    /// Records the success of a document just stored and writes its snapshot (a key
    /// set's with its keys' history).
    async fn accept(
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
    async fn save_snapshot(
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

    /// Records a failed fetch; logs it when the document's state changes.
    fn reject(&self, kind: DocKind, url: &str, err: &FetchError) {
        let reason = error_chain(err);
        let transition = self.health.failure(self.id(kind), reason.clone(), SystemTime::now());
        if transition == Transition::Failing {
            warn!(
                issuer = %self.issuer.name,
                document = kind.as_str(),
                url,
                reason = err.as_str(),
                "upstream fetch failed, keeping the last good copy: {reason}"
            );
        } else {
            debug!(issuer = %self.issuer.name, document = kind.as_str(), "upstream still failing: {reason}");
        }
    }

    /// Records whether the upstream's `issuer` is the configured public URL, with one
    /// ERROR line per change: no rewrite can fix a mismatch, only the IdP's setting.
    fn note_issuer(&self, upstream_issuer: &str) {
        let mismatch = (upstream_issuer != self.issuer.public_url).then(|| upstream_issuer.to_owned());
        if !self
            .health
            .issuer_mismatch(self.id(DocKind::Discovery), mismatch.clone())
        {
            return;
        }
        match mismatch {
            Some(upstream_issuer) => error!(
                issuer = %self.issuer.name,
                upstream_issuer = %upstream_issuer,
                public_url = %self.issuer.public_url,
                "the upstream's `issuer` is {upstream_issuer:?}, not public_url {:?}: relying parties will \
                 accept the document and refuse every token, whose `iss` is the upstream's value. jwks-edge never \
                 rewrites `issuer`; make the IdP name itself by the public URL (GitLab: external_url or \
                 ci_id_tokens_issuer_url; Keycloak: hostname / frontend URL; Kubernetes: kube-apiserver \
                 --service-account-issuer), or set public_url to the tokens' `iss`",
                self.issuer.public_url
            ),
            None => info!(issuer = %self.issuer.name, "the upstream's `issuer` now matches public_url"),
        }
    }

    async fn refresh_discovery(self, mut requests: mpsc::Receiver<RefreshRequest>) {
        let url = self.issuer.upstream_discovery_url();
        let mut backoff = Backoff::new(self.policy.refresh);
        let mut last_target = None;
        let mut snapshot_failing = false;
        let mut waiting: Vec<RefreshRequest> = Vec::new();
        loop {
            let fetched = self
                .measured(DocKind::Discovery, async {
                    let body = self.fetcher.get(&url).await?;
                    let (doc, upstream_issuer) =
                        discovery_document(&self.issuer, &body, SystemTime::now(), &self.policy)
                            .map_err(FetchError::Invalid)?;
                    self.note_issuer(&upstream_issuer);
                    self.router
                        .claim(self.index, doc.jwks.as_ref())
                        .map_err(FetchError::RouteConflict)?;
                    let doc = Arc::new(doc);
                    self.store.put(self.id(DocKind::Discovery), doc.clone());
                    Ok::<_, FetchError>((body, doc))
                })
                .await;
            let outcome = fetched.as_ref().map(|_| ()).map_err(|e| error_chain(e));
            waiting.drain(..).for_each(|w| drop(w.send(outcome.clone())));
            let delay = match fetched {
                Ok((body, doc)) => {
                    if doc.jwks != last_target {
                        if let Some(t) = &doc.jwks {
                            info!(
                                issuer = %self.issuer.name,
                                shape = t.shape.as_str(),
                                public = %t.public_url,
                                upstream = %t.upstream_url,
                                "key set mapped"
                            );
                        }
                        last_target = doc.jwks.clone();
                    }
                    self.accept(&doc, body, None, &mut snapshot_failing).await;
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    self.reject(DocKind::Discovery, &url, &err);
                    backoff.next_delay()
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                Some(request) = requests.recv() => waiting.push(request),
            }
        }
    }

    /// Where the key set is fetched from now: the configured override, or what the
    /// current discovery document says (waiting for the first one).
    async fn jwks_url(&self, discovery: &mut watch::Receiver<u64>) -> String {
        if let Some(url) = &self.issuer.upstream_jwks_url {
            return url.clone();
        }
        loop {
            let current = self.store.get(self.id(DocKind::Discovery));
            if let Some(target) = current.as_ref().and_then(|d| d.jwks.as_ref()) {
                return target.upstream_url.clone();
            }
            if discovery.changed().await.is_err() {
                // The store outlives its refreshers, so this cannot happen while we run.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn refresh_jwks(
        mut self,
        mut requests: mpsc::Receiver<RefreshRequest>,
        mut drops: mpsc::Receiver<DropRequest>,
    ) {
        let mut discovery = self.store.changes(self.id(DocKind::Discovery));
        let mut backoff = Backoff::new(self.policy.refresh);
        let mut retention = self.restored_keys.take().unwrap_or_else(|| self.new_retention());
        let mut snapshot_failing = false;
        let mut waiting: Vec<RefreshRequest> = Vec::new();
        loop {
            let url = self.jwks_url(&mut discovery).await;
            let fetched = self
                .measured(DocKind::Jwks, async {
                    let body = self.fetcher.get(&url).await?;
                    let discovery = self.store.get(self.id(DocKind::Discovery));
                    let discovery = discovery.as_ref().map(|d| &d.body[..]);
                    let body = self
                        .key_rules
                        .prepare(body, discovery)
                        .await
                        .map_err(FetchError::Invalid)?;
                    // Checked above; retention only adds keys that were published before.
                    let now = SystemTime::now();
                    let (published, events) = retention.publish(body, now).map_err(FetchError::Unpublishable)?;
                    Ok::<_, FetchError>((published, events, now))
                })
                .await;
            // Whatever its outcome, this fetch answers every request until one more
            // `revalidate_after` has passed (the limiter's bound holds during backoff too).
            let attempt = self
                .revalidation
                .gate(self.index)
                .attempted(tokio::time::Instant::now());
            let outcome = fetched.as_ref().map(|_| ()).map_err(|e| error_chain(e));
            waiting.drain(..).for_each(|w| drop(w.send(outcome.clone())));
            let delay = match fetched {
                Ok((published, events, now)) => {
                    let doc = Arc::new(Document::new(DocKind::Jwks, published.clone(), now, None, &self.policy));
                    self.store.put(self.id(DocKind::Jwks), doc.clone());
                    self.note_keys(&retention, &events);
                    self.accept(&doc, published, Some(retention.saved()), &mut snapshot_failing)
                        .await;
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    self.reject(DocKind::Jwks, &url, &err);
                    // Retention timers run while the upstream fails, too.
                    let expired = retention.expire(SystemTime::now());
                    if !expired.is_empty() {
                        self.republish(&retention, &expired, &mut snapshot_failing).await;
                    }
                    backoff.next_delay()
                }
            };
            // Sleep, but move at once if the discovery document names another key set URL,
            // or when a request was granted a revalidation after this fetch ended. The
            // next fetch then goes back to the period (or, if it fails, to the backoff).
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    Some(request) = requests.recv() => {
                        waiting.push(request);
                        break;
                    }
                    () = self.revalidation.poked(self.index) => {
                        // A poke granted while the fetch above ran is answered by it.
                        if self.revalidation.gate(self.index).granted_since(attempt) {
                            self.metrics.revalidation(self.index);
                            break;
                        }
                    }
                    // Answered at once, without a fetch; the sleep goes on.
                    Some(request) = drops.recv() => self.drop_retained(&mut retention, request, &mut snapshot_failing).await,
                    changed = discovery.changed() => {
                        if changed.is_err() {
                            (&mut sleep).await;
                            break;
                        }
                        let moved = self.issuer.upstream_jwks_url.is_none()
                            && self
                                .store
                                .get(self.id(DocKind::Discovery))
                                .is_some_and(|d| d.jwks.as_ref().is_some_and(|t| t.upstream_url != url));
                        if moved {
                            break;
                        }
                    }
                }
            }
        }
    }
}
