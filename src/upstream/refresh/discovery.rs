//! The discovery refresher: fetches the discovery document, rewrites it for the public,
//! publishes the key set path it names to the routing table, and stores it.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::config::Issuer;
use crate::error_chain;
use crate::model::document::{CachePolicy, DocKind, Document};
use crate::upstream::checks::ValidationError;
use crate::upstream::fetch::FetchError;
use crate::upstream::refresh::control::RefreshRequest;
use crate::upstream::refresh::issuer::IssuerRefresh;
use crate::upstream::refresh::schedule::{jitter, Backoff};
use crate::upstream::refresh::startup::ISSUER_MISMATCH;
use crate::upstream::rewrite::rewrite_discovery;

/// The public discovery document for an upstream answer fetched at `fetched_at`, and
/// the `issuer` it states (which should be the configured public URL).
pub(super) fn discovery_document(
    issuer: &Issuer,
    upstream: &[u8],
    fetched_at: SystemTime,
    policy: &CachePolicy,
) -> Result<(Document, String), ValidationError> {
    let public = rewrite_discovery(issuer, upstream)?;
    let doc = Document::new(DocKind::Discovery, public.body, fetched_at, Some(public.jwks), policy);
    Ok((doc, public.issuer))
}

impl IssuerRefresh {
    /// Records whether the upstream's `issuer` is the configured public URL, with one
    /// ERROR line per change: no rewrite can fix a mismatch, only the IdP's setting.
    pub(super) fn note_issuer(&self, upstream_issuer: &str) {
        let mismatch = (upstream_issuer != self.issuer.public_url).then(|| upstream_issuer.to_owned());
        if !self
            .health
            .issuer_mismatch(self.id(DocKind::Discovery), mismatch.clone())
        {
            return;
        }
        match mismatch {
            Some(upstream_issuer)
                if self.startup.issuer_mismatch(
                    self.index,
                    &self.issuer.name,
                    &upstream_issuer,
                    &self.issuer.public_url,
                ) => {}
            Some(upstream_issuer) => error!(
                issuer = %self.issuer.name,
                upstream_issuer = %upstream_issuer,
                public_url = %self.issuer.public_url,
                "the upstream's `issuer` is {upstream_issuer:?}, not public_url {:?}: {ISSUER_MISMATCH}",
                self.issuer.public_url
            ),
            None => info!(issuer = %self.issuer.name, "the upstream's `issuer` now matches public_url"),
        }
    }

    pub(super) async fn refresh_discovery(self: Arc<Self>, mut requests: mpsc::Receiver<RefreshRequest>) {
        let url = self.issuer.upstream_discovery_url();
        let mut backoff = Backoff::new(self.policy.refresh);
        let mut last_target = None;
        let mut snapshot_failing = false;
        let mut waiting: Vec<RefreshRequest> = Vec::new();
        let mut first = true;
        loop {
            // Boxed, like `accept` below: a future is as big as its largest state, and the
            // fetch's (the client's request, the body, the rewrite) would otherwise be held
            // by every sleeping refresher, 4 KiB each, for the few milliseconds it runs.
            let fetched = Box::pin(self.measured(DocKind::Discovery, async {
                let body = self.fetcher.get(&url).await?;
                let (doc, upstream_issuer) = discovery_document(&self.issuer, &body, SystemTime::now(), &self.policy)
                    .map_err(FetchError::Invalid)?;
                self.note_issuer(&upstream_issuer);
                self.router
                    .claim(self.index, doc.jwks.as_ref())
                    .map_err(FetchError::RouteConflict)?;
                let doc = Arc::new(doc);
                self.store.put(self.id(DocKind::Discovery), doc.clone());
                Ok::<_, FetchError>((body, doc))
            }))
            .await;
            // Without a discovery document (none fetched, none restored) and no
            // configured key set URL, the key set refresher has nothing to fetch yet.
            let blocks_key_set = fetched.is_err()
                && self.issuer.upstream_jwks_url.is_none()
                && self
                    .store
                    .get(self.id(DocKind::Discovery))
                    .is_none_or(|d| d.jwks.is_none());
            let summarized = std::mem::take(&mut first)
                && self.startup.first_attempt(
                    self.index,
                    &self.issuer.name,
                    DocKind::Discovery,
                    fetched.as_ref().err(),
                    blocks_key_set,
                );
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
                    Box::pin(self.accept(&doc, body, None, &mut snapshot_failing)).await;
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    self.reject(DocKind::Discovery, &url, &err, summarized);
                    backoff.next_delay()
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                Some(request) = requests.recv() => waiting.push(request),
            }
        }
    }
}
