//! Bounded waits: poll a check until it holds.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use super::{get, Transport};

/// Polls `check` every 20 ms until it holds, failing after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the proxy at `addr` serves `host` + `path` with a 200.
pub async fn until_served(addr: SocketAddr, host: &str, path: &str) {
    eventually(Duration::from_secs(10), "the document to be served", || async {
        get(addr, &Transport::Plain, host, path).await.status == StatusCode::OK
    })
    .await;
}
