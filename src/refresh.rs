//! Refresher tasks: the only code that fetches, validates and stores documents.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::Issuer;
use crate::document::{CachePolicy, DocKind, Document};
use crate::fetch::{FetchError, Fetcher};
use crate::rewrite::{rewrite_discovery, JwksTarget};
use crate::store::{DocId, DocumentStore};
use crate::validate::check_jwks;

/// First retry delay after a failed fetch; doubles up to the refresh period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Everything one issuer's two refreshers share.
#[derive(Clone)]
pub struct IssuerRefresh {
    pub index: usize,
    pub issuer: Arc<Issuer>,
    pub fetcher: Fetcher,
    pub store: Arc<DocumentStore>,
    pub policy: CachePolicy,
}

/// Starts both refreshers of every issuer. Dropping the set stops them; a fetch cut short
/// this way loses nothing, since only complete, validated documents are ever stored.
pub fn spawn_all(issuers: Vec<IssuerRefresh>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for issuer in issuers {
        set.spawn(issuer.clone().refresh_discovery());
        set.spawn(issuer.refresh_jwks());
    }
    set
}

/// `period` ± 10 %, so that replicas and documents do not fetch in lock-step.
fn jitter(period: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let permille = 900 + (random % 201);
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

/// Logs a document's upstream state once per change, not once per retry.
struct Health {
    name: String,
    kind: DocKind,
    failing: Option<String>,
}

impl Health {
    fn ok(&mut self, detail: impl FnOnce() -> String) {
        if let Some(reason) = self.failing.take() {
            info!(issuer = %self.name, document = self.kind.as_str(), previous = %reason, "upstream recovered");
        }
        debug!(issuer = %self.name, document = self.kind.as_str(), "{}", detail());
    }

    fn failed(&mut self, err: &FetchError, url: &str) {
        let reason = error_chain(err);
        if self.failing.as_deref() != Some(reason.as_str()) {
            warn!(
                issuer = %self.name,
                document = self.kind.as_str(),
                url,
                reason = err.as_str(),
                "upstream fetch failed, keeping the last good copy: {reason}"
            );
        } else {
            debug!(issuer = %self.name, document = self.kind.as_str(), "upstream still failing: {reason}");
        }
        self.failing = Some(reason);
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IssuerRefresh {
    fn health(&self, kind: DocKind) -> Health {
        Health {
            name: self.issuer.name.clone(),
            kind,
            failing: None,
        }
    }

    async fn fetch_discovery(&self, url: &str) -> Result<Document, FetchError> {
        let body = self.fetcher.get(url).await?;
        let public = rewrite_discovery(&self.issuer, &body).map_err(FetchError::Invalid)?;
        if public.issuer != self.issuer.public_url {
            warn!(
                issuer = %self.issuer.name,
                upstream_issuer = %public.issuer,
                "the upstream's `issuer` differs from public_url; relying parties will refuse its tokens"
            );
        }
        Ok(Document::new(
            DocKind::Discovery,
            public.body,
            SystemTime::now(),
            Some(public.jwks),
            &self.policy,
        ))
    }

    async fn refresh_discovery(self) {
        let id = DocId::discovery(self.index);
        let url = self.issuer.upstream_discovery_url();
        let mut health = self.health(DocKind::Discovery);
        let mut backoff = Backoff::new(self.policy.refresh);
        let mut last_target: Option<JwksTarget> = None;
        loop {
            let delay = match self.fetch_discovery(&url).await {
                Ok(doc) => {
                    let target = doc.jwks.clone();
                    if target != last_target {
                        if let Some(t) = &target {
                            info!(
                                issuer = %self.issuer.name,
                                shape = t.shape.as_str(),
                                public = %t.public_url,
                                upstream = %t.upstream_url,
                                "key set mapped"
                            );
                        }
                        last_target = target;
                    }
                    health.ok(|| format!("discovery refreshed ({} bytes)", doc.body.len()));
                    self.store.put(id, Arc::new(doc));
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    health.failed(&err, &url);
                    backoff.next_delay()
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Where the key set is fetched from now: the configured override, or what the
    /// current discovery document says (waiting for the first one).
    async fn jwks_url(
        &self,
        discovery: &mut tokio::sync::watch::Receiver<Option<Arc<Document>>>,
    ) -> String {
        if let Some(url) = &self.issuer.upstream_jwks_url {
            return url.clone();
        }
        let url = match discovery.wait_for(Option::is_some).await {
            Ok(doc) => doc
                .as_ref()
                .and_then(|d| d.jwks.as_ref())
                .map(|t| t.upstream_url.clone()),
            Err(_) => None,
        };
        match url {
            Some(url) => url,
            // The store outlives its refreshers, so the channel stays open while we run.
            None => std::future::pending().await,
        }
    }

    async fn refresh_jwks(self) {
        let id = DocId::jwks(self.index);
        let mut discovery = self.store.subscribe(DocId::discovery(self.index));
        let mut health = self.health(DocKind::Jwks);
        let mut backoff = Backoff::new(self.policy.refresh);
        loop {
            let url = self.jwks_url(&mut discovery).await;
            let result = async {
                let body = self.fetcher.get(&url).await?;
                let keys = check_jwks(&body).map_err(FetchError::Invalid)?;
                Ok::<_, FetchError>((body, keys))
            }
            .await;
            let delay = match result {
                Ok((body, keys)) => {
                    health.ok(|| format!("key set refreshed ({keys} keys)"));
                    let doc =
                        Document::new(DocKind::Jwks, body, SystemTime::now(), None, &self.policy);
                    self.store.put(id, Arc::new(doc));
                    backoff.reset();
                    jitter(self.policy.refresh)
                }
                Err(err) => {
                    health.failed(&err, &url);
                    backoff.next_delay()
                }
            };
            // Sleep, but move at once if the discovery document names another key set URL.
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    changed = discovery.changed() => {
                        if changed.is_err() {
                            (&mut sleep).await;
                            break;
                        }
                        if self.issuer.upstream_jwks_url.is_none() {
                            let moved = discovery.borrow().as_ref().and_then(|d| d.jwks.as_ref())
                                .is_some_and(|t| t.upstream_url != url);
                            if moved {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}
