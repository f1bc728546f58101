//! `[[publish]]` to S3, on SeaweedFS: the core cases with `publish --once`, and `serve`
//! keeping the bucket current, repairing it, and showing the sink in `/readyz` and `/metrics`.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn publish_once_to_s3_writes_what_the_proxy_serves_key_set_first_and_only_what_changed() {
    let store = SeaweedFs::start().await;
    core_cases(&store).await;
}

#[tokio::test]
async fn serve_with_publish_keeps_s3_current_repairs_it_and_shows_the_sink() {
    let store = SeaweedFs::start().await;
    let idps = Idps::start().await;
    let url = store.url("live");
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\nrefresh = \"1s\"\n{}\
         {}region = \"us-east-1\"\nissuers = [\"gitlab\"]\n",
        idps.issuers(),
        sink(&store, "live"),
    );
    let serve = Serve::run(&["--log-format", "json"], "serve", &store.env(), &config, 2);
    let keys = format!("live/{GITLAB_KEYS}");
    let discovery = format!("live/{GITLAB_DISCOVERY}");
    object_until(&store, &discovery, "the discovery document published", |_| true).await;
    assert!(store.object(&keys).await.is_some());
    assert!(
        store.object(&format!("live/{REALM_DISCOVERY}")).await.is_none(),
        "only the listed issuer"
    );

    let admin = serve.addr("admin");
    let status = eventually(Duration::from_secs(10), "the sink's success in /readyz", async || {
        let reply = get(admin, &Transport::Plain, "localhost", "/readyz?issuer=gitlab").await;
        let body = reply.json();
        let sink = body["issuers"][0]["publish"][0].clone();
        (!sink["last_success"].is_null()).then_some(sink)
    })
    .await;
    assert_eq!(status["sink"], url.as_str());
    assert_eq!(status["consecutive_failures"], 0);
    assert!(status["last_error"].is_null());
    let (_, summary) = readyz(admin).await;
    assert_eq!(summary["publish"]["sinks_failing"], 0, "{summary}");
    let (_, full) = readyz_detail(admin).await;
    assert_eq!(
        full["issuers"][1]["publish"],
        serde_json::json!([]),
        "prod is not published here"
    );

    // A rotation reaches the bucket; a deleted object comes back within a refresh period.
    idps.rotate_gitlab();
    rotated_key_set_published(&store, &keys).await;
    store.delete(&discovery).await;
    object_until(&store, &discovery, "the deleted discovery document restored", |_| true).await;

    let metrics = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let series = |name: &str| format!("{name}{{sink=\"{url}\",issuer=\"gitlab\"");
    assert!(
        text.contains(&format!(
            "{},outcome=\"written\"}}",
            series("jwks_edge_publish_uploads_total")
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{},outcome=\"unchanged\"}}",
            series("jwks_edge_publish_uploads_total")
        )),
        "{text}"
    );
    assert!(
        text.contains(&series("jwks_edge_publish_last_success_age_seconds")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}}} 0", series("jwks_edge_publish_consecutive_failures"))),
        "{text}"
    );
}

#[tokio::test]
async fn publish_runs_the_admin_listener_and_no_public_one_and_keeps_s3_current() {
    let store = SeaweedFs::start().await;
    let idps = Idps::start().await;
    // [server] names a public listener; `publish` opens none of it.
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\nrefresh = \"1s\"\n{}{}",
        idps.issuers(),
        sink(&store, "")
    );
    let serve = Serve::run(&[], "publish", &store.env(), &config, 1);
    object_until(
        &store,
        REALM_DISCOVERY,
        "the realm's discovery document at the bucket root",
        |_| true,
    )
    .await;
    object_until(
        &store,
        GITLAB_DISCOVERY,
        "GitLab's discovery document at the bucket root",
        |_| true,
    )
    .await;
    let admin = serve.addr("admin");
    let (status, body) = readyz_detail(admin).await;
    assert_eq!(status, http::StatusCode::OK, "{body}");
    let log = serve.log.lock().unwrap().join("\n");
    assert_eq!(
        log.matches("accepting connections").count(),
        1,
        "the admin listener only: {log}"
    );
    idps.rotate_gitlab();
    rotated_key_set_published(&store, GITLAB_KEYS).await;
}

/// Waits until the object at `key` holds the key set GitLab's IdP serves after
/// `rotate_gitlab`.
async fn rotated_key_set_published(store: &SeaweedFs, key: &str) {
    let rotated: serde_json::Value = serde_json::from_str(&fixture("kubernetes/jwks.json")).unwrap();
    object_until(store, key, "the rotated key set published", |o| {
        serde_json::from_slice::<serde_json::Value>(&o.bytes).is_ok_and(|keys| {
            keys["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == rotated["keys"][0]["kid"])
        })
    })
    .await;
}
