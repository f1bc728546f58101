//! Never slow, never empty: every upstream fault, warm and cold, restarts and rotation.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use jwks_edge::fake_idp::{Fault, Resource};
use tokio::time::Instant;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const KEYS: &str = "/oauth/discovery/keys";
/// A request served from memory must never take this long (it takes microseconds).
const NEVER_WAITS: Duration = Duration::from_millis(500);

/// Failures recorded so far for both documents of the first issuer.
async fn failures(admin: std::net::SocketAddr) -> (u64, u64) {
    let (_, body) = readyz_detail(admin).await;
    let issuer = &body["issuers"][0];
    (
        issuer["discovery"]["failures_total"].as_u64().unwrap(),
        issuer["jwks"]["failures_total"].as_u64().unwrap(),
    )
}

async fn warm(addr: std::net::SocketAddr) -> (Bytes, Bytes) {
    until_served(addr, GITLAB, KEYS).await;
    (
        get(addr, &Transport::Plain, GITLAB, DISCOVERY).await.body,
        get(addr, &Transport::Plain, GITLAB, KEYS).await.body,
    )
}

/// With a warm cache, `fault` upstream: requests keep getting the last good documents at
/// once, until both documents have failed to refresh at least once more.
/// `reason` is part of the key set's recorded error, proving which check caught the fault.
async fn warm_cache_survives(fault: Fault, name: &str, reason: &str) {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .fetch_timeout("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    let (good_discovery, good_keys) = warm(addr).await;
    let before = failures(proxy.admin).await;
    idp.set_fault(fault);

    let mut conn = Conn::open(addr, &Transport::Plain).await;
    let mut worst = Duration::ZERO;
    let mut requests = 0;
    Wait::up_to(Duration::from_secs(20))
        .every(Duration::from_millis(10))
        .until(&format!("{name}: a failed refresh of both documents"), async || {
            for (path, good) in [(DISCOVERY, &good_discovery), (KEYS, &good_keys)] {
                let sent = Instant::now();
                let reply = conn.get(GITLAB, path).await;
                worst = worst.max(sent.elapsed());
                requests += 1;
                assert_eq!(reply.status, StatusCode::OK, "{name}: {path}");
                assert_eq!(&reply.body, good, "{name}: {path} changed");
            }
            let now = failures(proxy.admin).await;
            now.0 > before.0 && now.1 > before.1
        })
        .await;
    eprintln!("fault {name}: worst latency {worst:?} over {requests} requests");
    assert!(worst < NEVER_WAITS, "{name}: a request waited {worst:?}");
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::OK, "{name}: still servable: {body}");
    let error = body["issuers"][0]["jwks"]["last_error"].as_str().unwrap_or_default();
    eprintln!("fault {name}: key set error recorded: {error}");
    assert!(error.contains(reason), "{name}: expected {reason:?} in {error:?}");
}

macro_rules! warm_fault_tests {
    ($($test:ident => $fault:expr, $reason:expr;)*) => {$(
        #[tokio::test]
        async fn $test() {
            warm_cache_survives($fault, stringify!($test), $reason).await;
        }
    )*};
}

warm_fault_tests! {
    warm_refused => Fault::Refuse, "connection failed";
    warm_hanging => Fault::Hang, "no answer within 1s";
    warm_slower_than_the_deadline => Fault::Delay(Duration::from_secs(3)), "no answer within 1s";
    warm_dripping => Fault::Drip(Duration::from_millis(100)), "no answer within 1s";
    warm_500 => Fault::Status(500), "answered HTTP 500";
    warm_503 => Fault::Status(503), "answered HTTP 503";
    warm_html => Fault::Html, "body is not JSON";
    warm_truncated => Fault::Truncate, "body could not be read";
    warm_invalid_json => Fault::Body(Bytes::from_static(b"{\"keys\": [{\"kty\": \"RSA\"")), "body is not JSON";
    warm_empty_keys => Fault::Body(Bytes::from_static(b"{\"keys\": []}")), "field `keys` is empty";
    warm_over_the_cap_chunked => Fault::Oversize(2 * 1024 * 1024), "body larger than 1048576 bytes";
    warm_over_the_cap_declared => Fault::Body(Bytes::from(vec![b' '; 2 * 1024 * 1024])), "body larger than 1048576 bytes";
    warm_reset => Fault::Reset, "connection failed";
}

#[tokio::test]
async fn cold_cache_with_a_hanging_upstream_answers_within_the_deadline_then_recovers() {
    let idp = gitlab_idp().await;
    idp.set_fault(Fault::Hang);
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .deadline("1s")
        .refresh("2s")
        .fetch_timeout("2s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let path = if i % 2 == 0 { DISCOVERY } else { KEYS };
        tasks.spawn(async move {
            let sent = Instant::now();
            let reply = get(addr, &Transport::Plain, GITLAB, path).await;
            (reply, sent.elapsed())
        });
    }
    let mut worst = Duration::ZERO;
    while let Some(done) = tasks.join_next().await {
        let (reply, took) = done.unwrap();
        worst = worst.max(took);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.header("retry-after").is_some());
        assert_eq!(reply.json()["error"], "not_ready");
    }
    eprintln!("cold hanging upstream: worst latency {worst:?} (deadline 1s)");
    assert!(
        worst < Duration::from_millis(1500),
        "answered after {worst:?}, deadline 1s"
    );
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["issuers"][0]["jwks"]["state"], "missing", "{body}");

    idp.set_fault(Fault::None);
    eventually(Duration::from_secs(15), "recovery without restart", async || {
        get(addr, &Transport::Plain, GITLAB, KEYS).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(readyz(proxy.admin).await.0, StatusCode::OK);
}

#[tokio::test]
async fn stale_copies_are_served_and_marked_until_stale_if_error_then_refused() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .fetch_timeout("1s")
        .stale_if_error("4s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    let (_, good_keys) = warm(addr).await;
    assert_eq!(readyz(proxy.admin).await.1["status"], "fresh");
    idp.set_fault(Fault::Refuse);

    eventually(Duration::from_secs(10), "a stale copy", async || {
        let reply = get(addr, &Transport::Plain, GITLAB, KEYS).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, good_keys);
        let cache_control = reply.header("cache-control").unwrap();
        assert!(cache_control.contains("stale-if-error=4") && cache_control.contains("stale-while-revalidate=1"));
        reply.header("cache-status") == Some("jwks-edge; hit; detail=stale-if-error")
    })
    .await;
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::OK, "stale is still ready: {body}");
    assert_eq!(body["status"], "stale");
    assert_eq!(body["issuers"][0]["jwks"]["state"], "stale");

    eventually(Duration::from_secs(10), "expiry", async || {
        get(addr, &Transport::Plain, GITLAB, KEYS).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let reply = get(addr, &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.json()["error"], "expired");
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
}

#[tokio::test]
async fn a_restart_with_the_upstream_down_serves_the_snapshot() {
    let state = tempfile::tempdir().unwrap();
    let idp = gitlab_idp().await;
    let snapshotting = || Proxy::builder().issuer(Issuer::gitlab(&idp)).state_dir(state.path());
    let first = snapshotting().start().await;
    let (good_discovery, good_keys) = warm(first.plain.unwrap()).await;
    // Final names only: a snapshot being written is a temporary file until its rename.
    eventually(Duration::from_secs(5), "two snapshots", async || {
        let entries = std::fs::read_dir(state.path()).unwrap();
        entries
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
            == 2
    })
    .await;
    first.shutdown().await;

    idp.set_fault(Fault::Refuse);
    let second = snapshotting().start().await;
    let addr = second.plain.unwrap();
    // No waiting: the snapshot is in memory before the listener accepts.
    let sent = Instant::now();
    let discovery = get(addr, &Transport::Plain, GITLAB, DISCOVERY).await;
    let keys = get(addr, &Transport::Plain, GITLAB, KEYS).await;
    assert!(sent.elapsed() < NEVER_WAITS, "took {:?}", sent.elapsed());
    assert_eq!(discovery.status, StatusCode::OK);
    assert_eq!(discovery.body, good_discovery);
    assert_eq!(keys.status, StatusCode::OK);
    assert_eq!(keys.body, good_keys);
    assert_eq!(readyz(second.admin).await.0, StatusCode::OK);
    second.shutdown().await;

    // Corrupt snapshots are ignored, never fatal: the proxy starts and recovers.
    for entry in std::fs::read_dir(state.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"{\"format\":1,").unwrap();
    }
    let third = snapshotting().deadline("200ms").start().await;
    let addr = third.plain.unwrap();
    assert_eq!(
        get(addr, &Transport::Plain, GITLAB, DISCOVERY).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    idp.set_fault(Fault::None);
    eventually(Duration::from_secs(15), "recovery", async || {
        get(addr, &Transport::Plain, GITLAB, KEYS).await.status == StatusCode::OK
    })
    .await;
}

fn key_set(kids: &[&str]) -> Resource {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"AA","y":"AA"}}"#))
        .collect();
    Resource::json_with_idp_headers(format!(r#"{{"keys":[{}]}}"#, keys.join(",")))
}

async fn published_kids(addr: std::net::SocketAddr) -> Vec<String> {
    let reply = get(addr, &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_rotated_key_is_published_within_a_refresh_period() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["a"]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    warm(addr).await;
    assert_eq!(published_kids(addr).await, ["a"]);
    idp.put(KEYS, key_set(&["a", "b"]));
    let rotated = Instant::now();
    eventually(Duration::from_secs(10), "the new key", async || {
        published_kids(addr).await == ["a", "b"]
    })
    .await;
    let took = rotated.elapsed();
    eprintln!("rotation visible after {took:?} (refresh 1s)");
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with a 1s refresh period"
    );
}

#[tokio::test]
async fn removed_keys_stay_published_for_keep_removed_keys() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["old", "current"]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .keep_removed_keys("3s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    warm(addr).await;
    idp.put(KEYS, key_set(&["current", "next"]));
    eventually(
        Duration::from_secs(10),
        "the new key beside the removed one",
        async || published_kids(addr).await == ["current", "next", "old"],
    )
    .await;
    eventually(Duration::from_secs(10), "the removed key to go", async || {
        published_kids(addr).await == ["current", "next"]
    })
    .await;
}
