//! Keys handled with care: retention timers across restarts, withdrawal, dropping
//! retained keys, and rotation made visible in `/readyz`, metrics and logs.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::{Fault, Resource};
use tokio::time::Instant;

use crate::operations::{metrics, post, sample};
use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const KEYS: &str = "/oauth/discovery/keys";
/// The issuer's default name: its public host and path.
const NAME: &str = "gitlab.example.com";

fn key_set(kids: &[&str]) -> Resource {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"AA","y":"AA"}}"#))
        .collect();
    Resource::json_with_idp_headers(format!(r#"{{"keys":[{}]}}"#, keys.join(",")))
}

async fn served_kids(addr: SocketAddr) -> Vec<String> {
    let reply = get(addr, &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The `keys` array `/readyz?detail=full` shows for the first issuer.
async fn readyz_keys(admin: SocketAddr) -> Vec<serde_json::Value> {
    let (_, body) = readyz_detail(admin).await;
    body["issuers"][0]["keys"].as_array().cloned().unwrap_or_default()
}

async fn key_report(admin: SocketAddr, kid: &str) -> Option<serde_json::Value> {
    readyz_keys(admin).await.into_iter().find(|k| k["kid"] == kid)
}

/// Both snapshot files are in place (final names only: a write in progress is a
/// temporary file until its rename).
async fn until_snapshotted(dir: &std::path::Path) {
    eventually(Duration::from_secs(5), "two snapshots", async || {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
            == 2
    })
    .await;
}

#[tokio::test]
async fn a_retained_key_s_timer_runs_across_restarts() {
    let state = tempfile::tempdir().unwrap();
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["old", "current"]));
    let start = || {
        Proxy::builder()
            .issuer(Issuer::gitlab(&idp))
            .refresh("1s")
            .keep_removed_keys("10s")
            .state_dir(state.path())
            .start()
    };
    let mut proxy = start().await;
    until_served(proxy.plain.unwrap(), GITLAB, KEYS).await;
    assert_eq!(served_kids(proxy.plain.unwrap()).await, ["old", "current"]);

    idp.put(KEYS, key_set(&["current"]));
    let removed = Instant::now();
    eventually(Duration::from_secs(5), "the removal to be seen", async || {
        key_report(proxy.admin, "old")
            .await
            .is_some_and(|k| k["state"] == "retained" && k["removed_at"].is_string())
    })
    .await;

    // Three restarts within 12 s of the removal. Each serves the retained key at once,
    // from the snapshot, while its 10 s have not passed.
    for restart in 1..=3u32 {
        tokio::time::sleep_until(removed + Duration::from_millis(2500) * restart).await;
        proxy.shutdown().await;
        proxy = start().await;
        let addr = proxy.plain.unwrap();
        assert_eq!(
            served_kids(addr).await,
            ["current", "old"],
            "restart {restart}, {:?} after the removal",
            removed.elapsed()
        );
        let old = key_report(proxy.admin, "old").await.expect("old is reported");
        assert_eq!(old["state"], "retained", "{old}");
    }

    // Gone 10 s after its first removal: at most one refresh period late, never early.
    let addr = proxy.plain.unwrap();
    let deadline = Duration::from_secs(10) + Duration::from_secs(1) + Duration::from_millis(2500);
    eventually(
        deadline.saturating_sub(removed.elapsed()),
        "the retained key to go",
        async || served_kids(addr).await == ["current"],
    )
    .await;
    let gone = removed.elapsed();
    eprintln!("retained key gone {gone:?} after its removal (keep_removed_keys 10s, refresh 1s, 3 restarts)");
    assert!(
        gone >= Duration::from_millis(9900),
        "gone after {gone:?}, before its 10 s"
    );
    assert!(key_report(proxy.admin, "old").await.is_none());

    // A fourth restart, with the upstream down: the snapshot does not bring it back.
    proxy.shutdown().await;
    idp.set_fault(Fault::Refuse);
    let proxy = start().await;
    assert_eq!(served_kids(proxy.plain.unwrap()).await, ["current"]);
}

#[tokio::test]
async fn a_withdrawn_kid_is_never_served() {
    let state = tempfile::tempdir().unwrap();
    let snapshotting = |issuer: Issuer| Proxy::builder().issuer(issuer).refresh("1s").state_dir(state.path());
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["good", "bad"]));

    // Before the withdrawal: both keys published, and saved in the snapshot.
    let first = snapshotting(Issuer::gitlab(&idp)).start().await;
    until_served(first.plain.unwrap(), GITLAB, KEYS).await;
    assert_eq!(served_kids(first.plain.unwrap()).await, ["good", "bad"]);
    until_snapshotted(state.path()).await;
    first.shutdown().await;

    // Withdrawn, restarted with the upstream down: not served from the snapshot either.
    idp.set_fault(Fault::Refuse);
    let proxy = snapshotting(Issuer::gitlab(&idp).withdrawn_kids(&["bad"]))
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    assert_eq!(served_kids(addr).await, ["good"]);
    let bad = key_report(proxy.admin, "bad").await.expect("bad is reported");
    assert_eq!(bad["state"], "withdrawn", "{bad}");

    // The upstream back, still publishing it: never served, fetch after fetch.
    idp.set_fault(Fault::None);
    let hits = idp.hits(KEYS);
    Wait::up_to(Duration::from_secs(15))
        .every(Duration::from_millis(50))
        .until("three refreshes", async || {
            if idp.hits(KEYS) >= hits + 3 {
                return true;
            }
            assert_eq!(served_kids(addr).await, ["good"]);
            false
        })
        .await;
    let samples = metrics(proxy.admin).await;
    let rotations = |event: &str| {
        sample(
            &samples,
            &format!("jwks_edge_key_rotations_total{{issuer=\"{NAME}\",event=\"{event}\"}}"),
        )
    };
    assert_eq!(rotations("withdrawn"), 1.0, "once, not per fetch");
    assert_eq!(
        sample(&samples, &format!("jwks_edge_published_keys{{issuer=\"{NAME}\"}}")),
        1.0
    );

    // Only the withdrawn key upstream: refused like an invalid answer; the last good
    // copy (which never held it) stays.
    idp.put(KEYS, key_set(&["bad"]));
    eventually(Duration::from_secs(10), "the refusal", async || {
        let (_, body) = readyz(proxy.admin).await;
        body["issuers"][0]["jwks"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("withdrawn_kids"))
    })
    .await;
    assert_eq!(served_kids(addr).await, ["good"]);
    let samples = metrics(proxy.admin).await;
    assert!(
        sample(
            &samples,
            &format!("jwks_edge_upstream_fetches_total{{issuer=\"{NAME}\",document=\"jwks\",outcome=\"withdrawn\"}}")
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_set_of_withdrawn_keys_only_is_never_published() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["bad"]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp).withdrawn_kids(&["bad"]))
        .deadline("300ms")
        .refresh("1s")
        .start()
        .await;
    eventually(Duration::from_secs(10), "a refused key set", async || {
        let (_, body) = readyz(proxy.admin).await;
        body["issuers"][0]["jwks"]["failures_total"].as_u64() >= Some(1)
    })
    .await;
    let reply = get(proxy.plain.unwrap(), &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!String::from_utf8_lossy(&reply.body).contains("bad"));
}

#[tokio::test]
async fn drop_retained_removes_retained_keys_at_once() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["old", "current"]));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let state = dir.path().join("state");
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .keep_removed_keys("1h")
        .state_dir(&state)
        .admin_token_file(&token)
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    idp.put(KEYS, key_set(&["current"]));
    eventually(Duration::from_secs(10), "the retained key", async || {
        served_kids(addr).await == ["current", "old"]
    })
    .await;

    const DROP: &str = "/admin/drop-retained";
    assert_eq!(post(proxy.admin, DROP, None).await.status, StatusCode::UNAUTHORIZED);
    let wrong = post(proxy.admin, DROP, Some("guess")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let unknown = post(proxy.admin, &format!("{DROP}?issuer=nope"), Some("s3cret")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(proxy.admin, &Transport::Plain, "localhost", DROP).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(served_kids(addr).await, ["current", "old"], "nothing dropped yet");

    let reply = post(proxy.admin, &format!("{DROP}?issuer={NAME}"), Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["issuers"][0]["name"], NAME);
    assert_eq!(body["issuers"][0]["dropped"], serde_json::json!(["old"]));
    // At once: the answer comes after the published copy changed.
    assert_eq!(served_kids(addr).await, ["current"]);
    assert!(key_report(proxy.admin, "old").await.is_none());
    let samples = metrics(proxy.admin).await;
    assert_eq!(
        sample(
            &samples,
            &format!("jwks_edge_key_rotations_total{{issuer=\"{NAME}\",event=\"expired\"}}")
        ),
        1.0
    );
    // Nothing left to drop: 200, nothing dropped; and it stays dropped at later fetches.
    let again = post(proxy.admin, DROP, Some("s3cret")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["issuers"][0]["dropped"], serde_json::json!([]));
    let hits = idp.hits(KEYS);
    eventually(Duration::from_secs(10), "another fetch", async || {
        idp.hits(KEYS) > hits + 1
    })
    .await;
    assert_eq!(served_kids(addr).await, ["current"]);

    // And after a restart (the snapshot was rewritten before the answer).
    proxy.shutdown().await;
    idp.set_fault(Fault::Refuse);
    let restarted = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .keep_removed_keys("1h")
        .state_dir(&state)
        .start()
        .await;
    assert_eq!(served_kids(restarted.plain.unwrap()).await, ["current"]);
}

#[tokio::test]
async fn readyz_and_metrics_show_each_key_s_history() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["a", "b"]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .keep_removed_keys("1h")
        .start()
        .await;
    until_served(proxy.plain.unwrap(), GITLAB, KEYS).await;
    let keys = readyz_keys(proxy.admin).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert_eq!(key["state"], "current", "{key}");
        assert_eq!(key["kty"], "EC");
        assert!(
            key["first_seen"].is_string() && key["last_seen_upstream"].is_string(),
            "{key}"
        );
        assert!(key["removed_at"].is_null() && key["expires_at"].is_null(), "{key}");
    }
    let first_seen_b = keys[1]["first_seen"].clone();
    let seen_b = keys[1]["last_seen_upstream"].as_str().unwrap().to_owned();
    let samples = metrics(proxy.admin).await;
    let published = format!("jwks_edge_published_keys{{issuer=\"{NAME}\"}}");
    let rotations = |event: &str| format!("jwks_edge_key_rotations_total{{issuer=\"{NAME}\",event=\"{event}\"}}");
    assert_eq!(sample(&samples, &published), 2.0);
    assert_eq!(sample(&samples, &rotations("added")), 2.0);
    for event in ["removed", "expired", "withdrawn"] {
        assert!(
            !samples.contains_key(&rotations(event)),
            "{event} exists once it first counts"
        );
    }

    idp.put(KEYS, key_set(&["b", "c"]));
    eventually(Duration::from_secs(10), "a retained and a new key", async || {
        let keys = readyz_keys(proxy.admin).await;
        let states: Vec<_> = keys
            .iter()
            .map(|k| format!("{} {}", k["kid"].as_str().unwrap(), k["state"].as_str().unwrap()))
            .collect();
        states == ["b current", "c current", "a retained"]
    })
    .await;
    let a = key_report(proxy.admin, "a").await.unwrap();
    let removed_at = humantime::parse_rfc3339(a["removed_at"].as_str().unwrap()).unwrap();
    let expires_at = humantime::parse_rfc3339(a["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires_at.duration_since(removed_at).unwrap(),
        Duration::from_secs(3600)
    );
    // b is still seen upstream fetch after fetch; its first sighting does not move.
    eventually(Duration::from_secs(5), "b seen again", async || {
        let b = key_report(proxy.admin, "b").await.unwrap();
        assert_eq!(b["first_seen"], first_seen_b);
        b["last_seen_upstream"].as_str().unwrap() > seen_b.as_str()
    })
    .await;
    let samples = metrics(proxy.admin).await;
    assert_eq!(sample(&samples, &published), 3.0);
    assert_eq!(sample(&samples, &rotations("added")), 3.0);
    assert_eq!(sample(&samples, &rotations("removed")), 1.0);
    assert_eq!(sample(&samples, &rotations("expired")), 0.0);
}

#[tokio::test]
async fn each_key_change_is_logged_once() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set(&["good", "bad"]));
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\nrefresh = \"1s\"\n{}",
        Issuer::gitlab(&idp).withdrawn_kids(&["bad"])
    );
    let serve = Serve::start(&config, 2);
    until_served(serve.addr("plain"), GITLAB, KEYS).await;
    idp.put(KEYS, key_set(&["good", "bad", "next"]));
    eventually(Duration::from_secs(10), "the new key", async || {
        served_kids(serve.addr("plain")).await == ["good", "next"]
    })
    .await;
    let hits = idp.hits(KEYS);
    eventually(Duration::from_secs(10), "three more fetches", async || {
        idp.hits(KEYS) >= hits + 3
    })
    .await;
    let log = serve.log.lock().unwrap().clone();
    let count = |what: &str, kid: &str| {
        log.iter()
            .filter(|l| l.contains(what) && l.contains(&format!("kid={kid} ")))
            .count()
    };
    assert_eq!(count("key withdrawn", "bad"), 1, "{log:#?}");
    assert_eq!(count("key published", "good"), 1, "{log:#?}");
    assert_eq!(count("key published", "next"), 1, "{log:#?}");
    assert_eq!(count("key published", "bad"), 0, "{log:#?}");
    let line = log.iter().find(|l| l.contains("key withdrawn")).unwrap();
    assert!(
        line.contains(" INFO ") && line.contains(&format!("issuer={NAME}")),
        "{line}"
    );
}
