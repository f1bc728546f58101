//! One bad issuer never darkens the others: readiness, per-issuer answers, route integrity,
//! an admin refresh that never blocks.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const GITLAB_KEYS: &str = "/oauth/discovery/keys";
const K8S: &str = "oidc.k8s.example.com";
const K8S_NAME: &str = "k8s";

/// A proxy for a healthy GitLab-shaped issuer and a Kubernetes-shaped one named `k8s`.
fn two_issuers(gitlab: &FakeIdp, k8s: &FakeIdp) -> ProxyBuilder {
    Proxy::builder()
        .issuer(Issuer::gitlab(gitlab).name("gitlab"))
        .issuer(Issuer::kubernetes(k8s).name(K8S_NAME))
}

async fn readyz_for(admin: SocketAddr, name: &str) -> (StatusCode, serde_json::Value) {
    let reply = get(admin, &Transport::Plain, "localhost", &format!("/readyz?issuer={name}")).await;
    (reply.status, reply.json())
}

async fn metrics(admin: SocketAddr) -> String {
    let reply = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn an_issuer_dead_from_the_start_does_not_keep_the_replica_unready() {
    let gitlab = gitlab_idp().await;
    let k8s = kubernetes_idp().await;
    k8s.set_fault(Fault::Refuse);
    let proxy = two_issuers(&gitlab, &k8s)
        .deadline("300ms")
        .startup_grace("2s")
        .start()
        .await;
    let strict = two_issuers(&gitlab, &k8s)
        .deadline("300ms")
        .startup_grace("2s")
        .readiness("all")
        .start()
        .await;

    // Within the grace, a document without any copy keeps the process "starting".
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "starting", "{body}");

    // After it, the process is ready for the issuer it can serve.
    eventually(Duration::from_secs(10), "ready after the grace", async || {
        readyz(proxy.admin).await.0 == StatusCode::OK
    })
    .await;
    let (_, body) = readyz(proxy.admin).await;
    assert_eq!(body["status"], "degraded", "{body}");
    // The summary lists the one issuer needing attention, not the healthy one.
    assert_eq!(body["issuers_needing_attention"], 1, "{body}");
    assert_eq!(body["issuers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["issuers"][0]["name"], K8S_NAME, "{body}");
    assert_eq!(body["issuers"][0]["servable"], false, "{body}");
    assert_eq!(body["issuers"][0]["jwks"]["state"], "missing", "{body}");
    assert!(body["issuers"][0]["discovery"]["last_error"].is_string(), "{body}");
    until_served(proxy.plain.unwrap(), GITLAB, GITLAB_KEYS).await;
    assert_eq!(
        get(
            proxy.plain.unwrap(),
            &Transport::Plain,
            K8S,
            "/.well-known/openid-configuration"
        )
        .await
        .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Per issuer, for monitors: the dead one is 503, the healthy one 200.
    let (status, body) = readyz_for(proxy.admin, K8S_NAME).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["issuers"].as_array().unwrap().len(), 1);
    assert_eq!(body["issuers"][0]["name"], K8S_NAME);
    assert_eq!(readyz_for(proxy.admin, "gitlab").await.0, StatusCode::OK);
    assert_eq!(readyz_for(proxy.admin, "nobody").await.0, StatusCode::NOT_FOUND);

    let text = metrics(proxy.admin).await;
    assert!(
        text.contains("jwks_edge_document_servable{issuer=\"k8s\",document=\"jwks\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("jwks_edge_document_servable{issuer=\"gitlab\",document=\"jwks\"} 1"),
        "{text}"
    );

    // The strict mode keeps the all-or-nothing answer.
    eventually(Duration::from_secs(10), "strict readiness past the grace", async || {
        readyz(strict.admin).await.1["status"] == "unavailable"
    })
    .await;
    assert_eq!(readyz(strict.admin).await.0, StatusCode::SERVICE_UNAVAILABLE);

    // When the dead upstream comes back, both become fully ready.
    k8s.set_fault(Fault::None);
    eventually(Duration::from_secs(15), "the second issuer recovers", async || {
        readyz(proxy.admin).await.1["status"] == "fresh" && readyz(strict.admin).await.0 == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn an_issuer_that_expires_after_being_served_does_not_take_the_replica_out() {
    let gitlab = gitlab_idp().await;
    let k8s = kubernetes_idp().await;
    let proxy = two_issuers(&gitlab, &k8s)
        .refresh("1s")
        .fetch_timeout("1s")
        .stale_if_error("2s")
        .start()
        .await;
    eventually(Duration::from_secs(10), "both issuers fresh", async || {
        readyz(proxy.admin).await.1["status"] == "fresh"
    })
    .await;
    assert_eq!(readyz_for(proxy.admin, K8S_NAME).await.0, StatusCode::OK);

    k8s.set_fault(Fault::Refuse);
    eventually(Duration::from_secs(15), "the failing issuer to expire", async || {
        readyz_for(proxy.admin, K8S_NAME).await.1["issuers"][0]["jwks"]["state"] == "expired"
    })
    .await;
    let (status, body) = readyz_for(proxy.admin, K8S_NAME).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = readyz(proxy.admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    // The healthy issuer goes on being served.
    let reply = get(proxy.plain.unwrap(), &Transport::Plain, GITLAB, GITLAB_KEYS).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-status"), Some("jwks-edge; hit"));
}

/// A root issuer whose IdP advertises `jwks_uri` values it should not, beside a
/// Keycloak realm on the same host.
#[tokio::test]
async fn a_learned_key_set_path_cannot_take_another_issuers_route() {
    let realm = keycloak_idp("prod").await;
    let realm_keys = "/realms/prod/protocol/openid-connect/certs";
    let root = fake_idp().await;
    let discovery = |jwks_uri: &str| {
        Resource::json_with_idp_headers(format!(
            r#"{{"issuer":"https://auth.example.com","jwks_uri":"{jwks_uri}"}}"#
        ))
    };
    root.put(
        "/.well-known/openid-configuration",
        discovery(&format!("{}/keys", root.base_url())),
    );
    root.put("/keys", Resource::json_with_idp_headers(fixture("gitlab/jwks.json")));
    let proxy = Proxy::builder()
        .issuer(Issuer::new("https://auth.example.com", &root.base_url()).name("root"))
        .issuer(Issuer::keycloak(&realm, "prod").name("prod"))
        .deadline("300ms")
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, "auth.example.com", "/keys").await;
    until_served(addr, "auth.example.com", realm_keys).await;
    let realm_set = get(addr, &Transport::Plain, "auth.example.com", realm_keys).await.body;
    let root_discovery = get(
        addr,
        &Transport::Plain,
        "auth.example.com",
        "/.well-known/openid-configuration",
    )
    .await
    .body;

    // The root IdP now names a key set under the realm's public URL: refused, and the
    // previous mapping stays.
    root.put(
        "/.well-known/openid-configuration",
        discovery(&format!("{}{realm_keys}", root.base_url())),
    );
    let error = discovery_error(proxy.admin, 0, "is already the key set path of issuer \"prod\"").await;
    assert!(error.contains(realm_keys), "{error}");
    // Then the realm's discovery path, then a path under the realm's public URL.
    root.put(
        "/.well-known/openid-configuration",
        discovery("https://elsewhere.internal/realms/prod/.well-known/openid-configuration"),
    );
    discovery_error(proxy.admin, 0, "is the discovery path of issuer \"prod\"").await;
    root.put(
        "/.well-known/openid-configuration",
        discovery("https://10.96.0.1/realms/prod/keys"),
    );
    let error = discovery_error(proxy.admin, 0, "lies under the public URL of issuer \"prod\"").await;
    assert!(error.contains("/realms/prod/keys"), "{error}");

    let reply = get(addr, &Transport::Plain, "auth.example.com", realm_keys).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body, realm_set,
        "the realm's relying parties get the realm's keys"
    );
    let reply = get(
        addr,
        &Transport::Plain,
        "auth.example.com",
        "/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(reply.body, root_discovery, "the previous document and mapping stay");
    assert_eq!(
        get(addr, &Transport::Plain, "auth.example.com", "/keys").await.status,
        StatusCode::OK
    );
    let text = metrics(proxy.admin).await;
    assert!(
        text.lines().any(|l| l.starts_with(
            "jwks_edge_upstream_fetches_total{issuer=\"root\",document=\"discovery\",outcome=\"route_conflict\"}"
        ) && !l.ends_with(" 0")),
        "{text}"
    );
}

/// Waits (bounded) until issuer `index`'s discovery error contains `expected`.
async fn discovery_error(admin: SocketAddr, index: usize, expected: &str) -> String {
    eventually(
        Duration::from_secs(10),
        &format!("the error {expected:?}"),
        async || {
            let (_, body) = readyz_detail(admin).await;
            let error = body["issuers"][index]["discovery"]["last_error"]
                .as_str()
                .unwrap_or_default();
            if error.contains(expected) {
                Ok(error.to_owned())
            } else {
                Err(body)
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_learned_key_set_path_cannot_take_a_configured_one() {
    // Kubernetes-shaped IdPs: the key set is at /openid/v1/jwks on the in-cluster
    // address, published at the public base + that path. Issuer "a" is configured to
    // publish at exactly the path the root issuer "b" learns.
    let first = kubernetes_idp().await;
    let second = kubernetes_idp().await;
    let proxy = Proxy::builder()
        .issuer(
            Issuer::new("https://oidc.example.com/a", &first.base_url())
                .name("a")
                .public_jwks_path("/openid/v1/jwks"),
        )
        .issuer(Issuer::new("https://oidc.example.com", &second.base_url()).name("b"))
        .refresh("1s")
        .start()
        .await;
    let error = discovery_error(proxy.admin, 1, "is already the key set path of issuer \"a\"").await;
    assert!(error.contains("/openid/v1/jwks"), "{error}");
    until_served(proxy.plain.unwrap(), "oidc.example.com", "/openid/v1/jwks").await;
    assert_eq!(readyz_for(proxy.admin, "b").await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Both IdPs serve the same fixture, so tell the fetches apart: only a's was asked.
    assert!(first.hits("/openid/v1/jwks") > 0);
    assert_eq!(second.hits("/openid/v1/jwks"), 0);
}

#[tokio::test]
async fn quick_admin_refreshes_before_the_first_document_never_block() {
    let idp = gitlab_idp().await;
    idp.set_fault(Fault::Hang);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "secret").unwrap();
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .fetch_timeout("1s")
        .admin_token_file(&token)
        .start()
        .await;
    let admin = proxy.admin;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        tasks.spawn(async move {
            // `send` fails the test if no reply comes within the I/O timeout.
            let mut conn = Conn::open(admin, &Transport::Plain).await;
            conn.send(
                Method::POST,
                "localhost",
                "/admin/refresh",
                &[("authorization", "Bearer secret")],
            )
            .await
        });
    }
    let mut busy = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        let body = reply.json();
        assert_eq!(body["ok"], false, "{body}");
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert!(reply.header("retry-after").is_some());
                assert!(body.to_string().contains("busy"), "{body}");
            }
            StatusCode::BAD_GATEWAY => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(busy > 0, "six refreshes cannot all fit the refreshers' queues");
    // And a seventh, once they are answered, is answered too.
    let reply = Conn::open(admin, &Transport::Plain)
        .await
        .send(
            Method::POST,
            "localhost",
            "/admin/refresh",
            &[("authorization", "Bearer secret")],
        )
        .await;
    assert!(reply.status.is_server_error(), "{}", reply.status);
}
