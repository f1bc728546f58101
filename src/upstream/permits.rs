//! `UpstreamPermits`: how many fetches may be in flight to one upstream authority at once.
//!
//! Every issuer has its own `Fetcher`, but a fleet of issuers (Keycloak realms, clusters
//! behind one discovery server) often lives on one upstream. Without a bound, a start
//! sends every document's first fetch to that upstream in the same instant, more than
//! its listen backlog accepts, and the refused fetches are retries the proxy caused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Uri;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One semaphore per authority (scheme, host, port), created on first use: key set URLs
/// are only known once a discovery document names them. Shared by every `Fetcher`.
///
/// Tokio's semaphore is fair (FIFO), and each holder keeps its permit for at most one
/// fetch timeout, so a queued fetch waits at most about
/// `queued ahead / limit × fetch_timeout`; the `Fetcher` bounds the wait explicitly too.
#[derive(Debug)]
pub struct UpstreamPermits {
    limit: usize,
    /// Written by any refresher on its first fetch to an authority; never shrinks, and
    /// holds one entry per distinct upstream authority of the config's documents.
    by_authority: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl UpstreamPermits {
    /// `limit` fetches at once per authority; 0 is treated as 1 (config refuses it).
    pub fn new(limit: usize) -> UpstreamPermits {
        UpstreamPermits {
            limit: limit.max(1),
            by_authority: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for a permit to fetch `uri`; the fetch holds it until its body is read.
    /// `None` only if the semaphore were closed, which nothing does.
    pub async fn acquire(&self, uri: &Uri) -> Option<OwnedSemaphorePermit> {
        self.semaphore(&authority(uri)).acquire_owned().await.ok()
    }

    fn semaphore(&self, authority: &str) -> Arc<Semaphore> {
        let mut map = self.by_authority.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(semaphore) = map.get(authority) {
            return semaphore.clone();
        }
        // An upstream chooses its `jwks_uri`, so authorities can come and go: before adding
        // one, forget those no fetch holds or waits for (only the map's own reference is
        // left), which a fresh semaphore would replace exactly. The map stays bounded by
        // the authorities in use.
        map.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        let semaphore = Arc::new(Semaphore::new(self.limit));
        map.insert(authority.to_owned(), semaphore.clone());
        semaphore
    }
}

/// `scheme://host:port`, the port made explicit, so that `http://idp` and
/// `http://idp:80` share one bound. Hosts compare case-insensitively.
pub fn authority(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn default_ports_and_case_make_one_authority() {
        let a: Uri = "http://IdP.internal/realms/a/.well-known/openid-configuration"
            .parse()
            .unwrap();
        let b: Uri = "http://idp.internal:80/realms/b/certs".parse().unwrap();
        let c: Uri = "https://idp.internal/realms/b/certs".parse().unwrap();
        let d: Uri = "https://idp.internal:443/x".parse().unwrap();
        assert_eq!(authority(&a), authority(&b));
        assert_eq!(authority(&c), authority(&d));
        assert_ne!(authority(&a), authority(&c));
        assert_eq!(authority(&c), "https://idp.internal:443");
    }

    #[tokio::test]
    async fn one_authority_is_bounded_another_is_not_held_up() {
        let permits = UpstreamPermits::new(2);
        let a: Uri = "http://127.0.0.1:1000/a".parse().unwrap();
        let b: Uri = "http://127.0.0.1:1001/b".parse().unwrap();
        let first = permits.acquire(&a).await;
        let _second = permits.acquire(&a).await;
        let third = tokio::time::timeout(Duration::from_millis(50), permits.acquire(&a)).await;
        assert!(third.is_err(), "a third permit for one authority must wait");
        tokio::time::timeout(Duration::from_secs(5), permits.acquire(&b))
            .await
            .expect("another authority has its own permits");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), permits.acquire(&a))
            .await
            .expect("a released permit is handed on");
    }

    #[tokio::test]
    async fn authorities_no_fetch_uses_are_forgotten() {
        let permits = UpstreamPermits::new(1);
        let held: Uri = "http://127.0.0.1:1000/a".parse().unwrap();
        let _permit = permits.acquire(&held).await;
        for port in 2000..2100 {
            let uri: Uri = format!("http://127.0.0.1:{port}/x").parse().unwrap();
            drop(permits.acquire(&uri).await);
        }
        let map = permits.by_authority.lock().unwrap();
        assert!(map.len() <= 2, "only authorities in use are kept: {}", map.len());
        assert!(map.contains_key(&authority(&held)), "a held permit's authority stays");
    }

    #[test]
    fn zero_is_one() {
        assert_eq!(UpstreamPermits::new(0).limit(), 1);
    }
}
