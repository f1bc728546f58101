//! Revalidation on demand: a key added upstream is served within seconds, and traffic never costs the upstream more than one key set fetch per `cache.revalidate_after`.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const KEYS: &str = "/oauth/discovery/keys";
/// The default `cache.revalidate_after`.
const REVALIDATE_AFTER: Duration = Duration::from_secs(5);
/// A request served from memory never takes this long (it takes microseconds).
const NEVER_WAITS: Duration = Duration::from_millis(500);

/// The GitLab fixture's key set plus one more signing key for each of `added` (a copy of
/// the first key under a new `kid`: a real RSA public key, as any key check wants).
fn key_set_with(added: &[&str]) -> Resource {
    let mut set: Value = serde_json::from_str(&fixture("gitlab/jwks.json")).unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    let template = keys[0].clone();
    for kid in added {
        let mut key = template.clone();
        key["kid"] = Value::from(*kid);
        keys.push(key);
    }
    Resource::json_with_idp_headers(set.to_string())
}

fn kids(reply: &Reply) -> Vec<String> {
    reply.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// `proxy` for a GitLab-shaped `idp` with `refresh = "60s"` (so the period plays no part
/// in a test's span), warmed up: both documents are served.
async fn proxy_for(idp: &FakeIdp, proxy: ProxyBuilder) -> Proxy {
    let proxy = proxy.issuer(Issuer::gitlab(idp)).refresh("60s").start().await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    until_served(addr, GITLAB, DISCOVERY).await;
    proxy
}

/// The value of one sample on the admin listener's `/metrics`, 0 when absent.
async fn sample(admin: SocketAddr, series: &str) -> f64 {
    let reply = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const REVALIDATIONS: &str = "jwks_edge_revalidations_total{issuer=\"gitlab.example.com\",document=\"jwks\"}";

/// Upstream requests of both documents so far.
fn hits(idp: &FakeIdp) -> (u64, u64) {
    (idp.hits(DISCOVERY), idp.hits(KEYS))
}

/// The most revalidation fetches `elapsed` may cause for one document: one per
/// interval, plus one for the interval in progress.
fn revalidation_bound(elapsed: Duration) -> u64 {
    elapsed.as_secs() / REVALIDATE_AFTER.as_secs() + 1
}

#[tokio::test]
async fn a_key_added_upstream_is_served_within_seconds_with_a_60s_period() {
    let idp = gitlab_idp().await;
    let proxy = proxy_for(&idp, Proxy::builder()).await;
    let mut conn = Conn::open(proxy.plain.unwrap(), &Transport::Plain).await;
    let mut added = Vec::new();
    let mut delays = Vec::new();
    for kid in ["rotated-1", "rotated-2", "rotated-3"] {
        added.push(kid);
        idp.put(KEYS, key_set_with(&added));
        let changed = Instant::now();
        // A relying party that saw an unknown `kid`, polling once a second.
        Wait::up_to(Duration::from_secs(10))
            .every(Duration::from_secs(1))
            .until(
                &format!("{kid} to be served after it was added upstream (refresh 60s)"),
                async || {
                    let reply = conn.get(GITLAB, KEYS).await;
                    assert_eq!(reply.status, StatusCode::OK);
                    kids(&reply).iter().any(|k| k == kid)
                },
            )
            .await;
        delays.push(changed.elapsed());
    }
    eprintln!("rotation delays with refresh 60s, revalidate_after 5s, polled once a second: {delays:?}");
    assert!(
        sample(proxy.admin, REVALIDATIONS).await >= 3.0,
        "each rotation came from a revalidation"
    );
}

#[tokio::test]
async fn ten_thousand_requests_cost_at_most_one_fetch_per_interval_per_document() {
    const CLIENTS: u64 = 10;
    const PER_CLIENT: u64 = 1000;
    // 1000 requests 30 ms apart: ~30 s per client, all clients at once.
    const PACE: Duration = Duration::from_millis(30);
    let idp = gitlab_idp().await;
    let proxy = proxy_for(&idp, Proxy::builder()).await;
    let addr = proxy.plain.unwrap();
    let before = hits(&idp);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        clients.spawn(async move {
            let mut conn = Conn::open(addr, &Transport::Plain).await;
            let mut pace = tokio::time::interval(PACE);
            pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut worst = Duration::ZERO;
            for i in 0..PER_CLIENT {
                pace.tick().await;
                let path = if (client + i) % 2 == 0 { KEYS } else { DISCOVERY };
                let sent = Instant::now();
                let reply = conn.get(GITLAB, path).await;
                worst = worst.max(sent.elapsed());
                assert_eq!(reply.status, StatusCode::OK, "{path}");
            }
            worst
        });
    }
    let mut worst = Duration::ZERO;
    while let Some(client) = clients.join_next().await {
        worst = worst.max(client.unwrap());
    }
    let elapsed = started.elapsed();
    let after = hits(&idp);
    let (discovery, keys) = (after.0 - before.0, after.1 - before.1);
    let revalidations = sample(proxy.admin, REVALIDATIONS).await;
    eprintln!(
        "{} requests in {elapsed:?}: upstream {keys} key set and {discovery} discovery requests, \
         {revalidations} revalidations, worst request {worst:?}",
        CLIENTS * PER_CLIENT
    );
    // With a 60 s period, the only fetches are revalidations.
    let bound = revalidation_bound(elapsed);
    assert!(keys <= bound, "{keys} key set fetches in {elapsed:?}, bound {bound}");
    assert!(discovery <= bound, "{discovery} discovery fetches in {elapsed:?}");
    assert!(
        discovery <= 1,
        "the discovery document is not revalidated on demand: {discovery}"
    );
    // And revalidation did run, every interval or so: the bound is not met by doing nothing.
    assert!(
        keys >= bound.saturating_sub(3).max(2),
        "only {keys} revalidations in {elapsed:?}"
    );
    assert!(revalidations >= keys as f64 - 1.0 && revalidations <= bound as f64);
    assert!(worst < NEVER_WAITS, "a request waited {worst:?}");
}

/// Requests at ~20/s for `span`; returns the slowest answer. Every answer must be 200.
async fn traffic(addr: SocketAddr, span: Duration) -> Duration {
    let mut conn = Conn::open(addr, &Transport::Plain).await;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < span {
        pace.tick().await;
        let sent = Instant::now();
        let reply = conn.get(GITLAB, KEYS).await;
        worst = worst.max(sent.elapsed());
        assert_eq!(reply.status, StatusCode::OK);
    }
    worst
}

#[tokio::test]
async fn no_request_waits_for_a_slow_revalidation() {
    let idp = gitlab_idp().await;
    let proxy = proxy_for(&idp, Proxy::builder()).await;
    // Slower than the deadline, within fetch_timeout (5 s): revalidations succeed, late.
    idp.set_fault(Fault::Delay(Duration::from_secs(3)));
    let before = idp.hits(KEYS);
    let started = Instant::now();
    let worst = traffic(proxy.plain.unwrap(), Duration::from_secs(12)).await;
    let keys = idp.hits(KEYS) - before;
    eprintln!(
        "slow upstream: worst request {worst:?}, {keys} key set fetches in {:?}",
        started.elapsed()
    );
    assert!(worst < NEVER_WAITS, "a request waited {worst:?}");
    assert!(keys >= 1, "no revalidation happened");
    assert!(keys <= revalidation_bound(started.elapsed()));
}

#[tokio::test]
async fn a_failing_upstream_gets_no_more_than_its_backoff_and_one_fetch_per_interval() {
    let idp = gitlab_idp().await;
    let proxy = proxy_for(&idp, Proxy::builder()).await;
    let addr = proxy.plain.unwrap();
    let good = get(addr, &Transport::Plain, GITLAB, KEYS).await.body;
    idp.set_fault(Fault::Status(500));
    let before = idp.hits(KEYS);
    let started = Instant::now();
    let worst = traffic(addr, Duration::from_secs(16)).await;
    let elapsed = started.elapsed();
    let keys = idp.hits(KEYS) - before;
    // Backoff from 1 s doubling (1, 2, 4, 8 s...) fits at most log2(span) + 1 retries in
    // the span; each revalidation is a failure too and only pushes the backoff further.
    let backoff = u64::from((elapsed.as_secs() + 1).ilog2()) + 1;
    let bound = revalidation_bound(elapsed) + backoff;
    eprintln!("failing upstream: {keys} key set fetches in {elapsed:?} (bound {bound}), worst request {worst:?}");
    assert!(
        keys <= bound,
        "{keys} fetches in {elapsed:?} while failing, bound {bound}"
    );
    assert!(
        keys >= revalidation_bound(elapsed) - 2,
        "traffic did revalidate: {keys}"
    );
    assert!(worst < NEVER_WAITS, "a request waited {worst:?}");
    // The last good copy was served throughout, and the upstream's recovery is seen
    // within one interval of traffic, not at the next 60 s period.
    assert_eq!(get(addr, &Transport::Plain, GITLAB, KEYS).await.body, good);
    idp.put(KEYS, key_set_with(&["after-recovery"]));
    idp.set_fault(Fault::None);
    let recovered = Instant::now();
    eventually(Duration::from_secs(10), "the key added during the outage", async || {
        kids(&get(addr, &Transport::Plain, GITLAB, KEYS).await).contains(&"after-recovery".to_owned())
    })
    .await;
    eprintln!("recovery seen after {:?}", recovered.elapsed());
}

#[tokio::test]
async fn revalidate_after_0s_leaves_the_upstream_to_the_period() {
    let idp = gitlab_idp().await;
    let proxy = proxy_for(&idp, Proxy::builder().revalidate_after("0s")).await;
    let before = hits(&idp);
    idp.put(KEYS, key_set_with(&["unseen"]));
    let worst = traffic(proxy.plain.unwrap(), Duration::from_secs(7)).await;
    assert_eq!(hits(&idp), before, "traffic caused an upstream fetch");
    assert!(worst < NEVER_WAITS);
    let reply = get(proxy.plain.unwrap(), &Transport::Plain, GITLAB, KEYS).await;
    assert!(!kids(&reply).contains(&"unseen".to_owned()), "served before the period");
    assert_eq!(sample(proxy.admin, REVALIDATIONS).await, 0.0);
}
