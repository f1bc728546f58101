//! The key set refresher: follows the discovery document's key set URL, fetches, applies
//! the key set rules and retention, and stores what may be published; it also runs the
//! retention timers between fetches and answers `POST /admin/drop-retained`.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::error_chain;
use crate::model::document::{DocKind, Document};
use crate::upstream::fetch::FetchError;
use crate::upstream::refresh::control::{DropRequest, RefreshRequest};
use crate::upstream::refresh::issuer::IssuerRefresh;
use crate::upstream::refresh::schedule::{jitter, Backoff};
use crate::upstream::rotation::{KeyEvent, KeyRetention};

impl IssuerRefresh {
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

    pub(super) async fn refresh_jwks(
        self: Arc<Self>,
        restored_keys: Option<KeyRetention>,
        mut requests: mpsc::Receiver<RefreshRequest>,
        mut drops: mpsc::Receiver<DropRequest>,
    ) {
        let mut discovery = self.store.changes(self.id(DocKind::Discovery));
        let mut backoff = Backoff::new(self.policy.refresh);
        let mut retention = restored_keys.unwrap_or_else(|| self.new_retention());
        let mut snapshot_failing = false;
        let mut waiting: Vec<RefreshRequest> = Vec::new();
        let mut first = true;
        loop {
            let url = self.jwks_url(&mut discovery).await;
            // Boxed, as in the discovery refresher: only a running fetch holds its state.
            let fetched = Box::pin(self.measured(DocKind::Jwks, async {
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
            }))
            .await;
            // Whatever its outcome, this fetch answers every request until one more
            // `revalidate_after` has passed (the limiter's bound holds during backoff too).
            let attempt = self
                .revalidation
                .gate(self.index)
                .attempted(tokio::time::Instant::now());
            let summarized = std::mem::take(&mut first)
                && self.startup.first_attempt(
                    self.index,
                    &self.issuer.name,
                    DocKind::Jwks,
                    fetched.as_ref().err(),
                    false,
                );
            let outcome = fetched.as_ref().map(|_| ()).map_err(|e| error_chain(e));
            waiting.drain(..).for_each(|w| drop(w.send(outcome.clone())));
            let delay = match fetched {
                Ok((published, events, now)) => {
                    let doc = Arc::new(Document::new(DocKind::Jwks, published.clone(), now, None, &self.policy));
                    self.store.put(self.id(DocKind::Jwks), doc.clone());
                    self.note_keys(&retention, &events);
                    Box::pin(self.accept(&doc, published, Some(retention.saved()), &mut snapshot_failing)).await;
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    self.reject(DocKind::Jwks, &url, &err, summarized);
                    // Retention timers run while the upstream fails, too.
                    let expired = retention.expire(SystemTime::now());
                    if !expired.is_empty() {
                        Box::pin(self.republish(&retention, &expired, &mut snapshot_failing)).await;
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
                    Some(request) = drops.recv() => {
                        Box::pin(self.drop_retained(&mut retention, request, &mut snapshot_failing)).await;
                    }
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
