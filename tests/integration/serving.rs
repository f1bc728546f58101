//! Serving both documents for the three upstream shapes, over HTTPS, HTTP/2 and plain HTTP.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode, Version};

use crate::support::*;

pub(crate) const GITLAB: &str = "gitlab.example.com";
pub(crate) const AUTH: &str = "auth.example.com";
pub(crate) const K8S: &str = "oidc.k8s.example.com";

pub(crate) struct Fleet {
    pub(crate) gitlab: jwks_edge::fake_idp::FakeIdp,
    pub(crate) prod: jwks_edge::fake_idp::FakeIdp,
    pub(crate) dev: jwks_edge::fake_idp::FakeIdp,
    k8s: jwks_edge::fake_idp::FakeIdp,
    pub(crate) certs: Arc<TestCerts>,
    pub(crate) proxy: Proxy,
}

/// GitLab, two Keycloak realms on one host, and Kubernetes, behind one proxy.
pub(crate) async fn fleet() -> Fleet {
    let gitlab = gitlab_idp().await;
    let prod = keycloak_idp("prod").await;
    let dev = keycloak_idp("dev").await;
    let k8s = kubernetes_idp().await;
    let certs = Arc::new(TestCerts::for_hosts(&[GITLAB, AUTH, K8S]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&gitlab))
        .issuer(Issuer::keycloak(&prod, "prod"))
        .issuer(Issuer::keycloak(&dev, "dev"))
        .issuer(Issuer::kubernetes(&k8s))
        .tls(certs.clone())
        .start()
        .await;
    Fleet {
        gitlab,
        prod,
        dev,
        k8s,
        certs,
        proxy,
    }
}

impl Fleet {
    pub(crate) fn https(&self, host: &str) -> Transport {
        Transport::Tls {
            config: self.certs.client_config(&[b"http/1.1"]),
            sni: host.to_owned(),
        }
    }

    pub(crate) fn h2(&self, host: &str) -> Transport {
        Transport::Tls {
            config: self.certs.client_config(&[b"h2"]),
            sni: host.to_owned(),
        }
    }
}

/// Every header rule of the README's "Its own headers", on one document response.
pub(crate) fn assert_cacheable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"), "{what}");
    let cache_control = reply.header("cache-control").unwrap_or_default();
    assert!(
        cache_control.starts_with("public, max-age=300")
            && cache_control.contains("stale-while-revalidate=")
            && cache_control.contains("stale-if-error="),
        "{what}: cache-control {cache_control:?}"
    );
    for forbidden in ["no-cache", "no-store", "private", "must-revalidate"] {
        assert!(!cache_control.contains(forbidden), "{what}: {cache_control:?}");
    }
    for absent in ["pragma", "set-cookie", "expires"] {
        assert!(
            reply.header(absent).is_none(),
            "{what}: upstream header {absent} leaked"
        );
    }
    let etag = reply.header("etag").unwrap_or_default();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{what}: strong etag {etag:?}"
    );
    assert!(
        reply.header("age").is_some_and(|a| a.parse::<u64>().is_ok()),
        "{what}: age"
    );
    assert!(
        reply
            .header("cache-status")
            .is_some_and(|s| s.starts_with("jwks-edge;")),
        "{what}: cache-status"
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"), "{what}");
}

#[tokio::test]
pub(crate) async fn three_upstream_shapes_are_served_rewritten_over_https() {
    let fleet = fleet().await;
    let addr = fleet.proxy.https.unwrap();

    // GitLab: jwks_uri already public, kept; keys fetched from the upstream.
    let discovery = get(addr, &fleet.https(GITLAB), GITLAB, "/.well-known/openid-configuration").await;
    assert_cacheable(&discovery, "gitlab discovery");
    let doc = discovery.json();
    assert_eq!(doc["issuer"], "https://gitlab.example.com");
    assert_eq!(doc["jwks_uri"], "https://gitlab.example.com/oauth/discovery/keys");
    let original: serde_json::Value = serde_json::from_str(&fixture("gitlab/openid-configuration.json")).unwrap();
    assert_eq!(
        doc, original,
        "nothing under the upstream base: the document is unchanged"
    );
    let keys = get(addr, &fleet.https(GITLAB), GITLAB, "/oauth/discovery/keys").await;
    assert_cacheable(&keys, "gitlab jwks");
    assert_eq!(keys.body, fixture("gitlab/jwks.json").as_bytes());
    assert!(fleet.gitlab.hits("/oauth/discovery/keys") >= 1);

    // Keycloak: two realms on one host; backend URLs become public ones.
    for (realm, idp) in [("prod", &fleet.prod), ("dev", &fleet.dev)] {
        let path = format!("/realms/{realm}/.well-known/openid-configuration");
        let discovery = get(addr, &fleet.https(AUTH), AUTH, &path).await;
        assert_cacheable(&discovery, "keycloak discovery");
        let text = String::from_utf8(discovery.body.to_vec()).unwrap();
        assert!(!text.contains(&idp.base_url()), "backend address leaked: {text}");
        let doc = discovery.json();
        let public = format!("https://auth.example.com/realms/{realm}");
        assert_eq!(doc["issuer"], public.as_str());
        assert_eq!(doc["jwks_uri"], format!("{public}/protocol/openid-connect/certs"));
        assert_eq!(doc["token_endpoint"], format!("{public}/protocol/openid-connect/token"));
        let keys = get(
            addr,
            &fleet.https(AUTH),
            AUTH,
            &format!("/realms/{realm}/protocol/openid-connect/certs"),
        )
        .await;
        assert_cacheable(&keys, "keycloak jwks");
        assert_eq!(keys.json()["keys"].as_array().unwrap().len(), 2);
    }

    // Kubernetes: in-cluster jwks_uri published on the public host.
    let discovery = get(addr, &fleet.https(K8S), K8S, "/.well-known/openid-configuration").await;
    assert_cacheable(&discovery, "kubernetes discovery");
    assert_eq!(
        discovery.json()["jwks_uri"],
        "https://oidc.k8s.example.com/openid/v1/jwks"
    );
    let keys = get(addr, &fleet.https(K8S), K8S, "/openid/v1/jwks").await;
    assert_cacheable(&keys, "kubernetes jwks");
    assert!(fleet.k8s.hits("/openid/v1/jwks") >= 1);
}

#[tokio::test]
pub(crate) async fn plain_listener_applies_the_same_header_rules() {
    let fleet = fleet().await;
    let addr = fleet.proxy.plain.unwrap();
    for (host, path) in [
        (GITLAB, "/.well-known/openid-configuration"),
        (GITLAB, "/oauth/discovery/keys"),
        (AUTH, "/realms/prod/.well-known/openid-configuration"),
        (AUTH, "/realms/prod/protocol/openid-connect/certs"),
        (K8S, "/openid/v1/jwks"),
    ] {
        let reply = get(addr, &Transport::Plain, host, path).await;
        assert_cacheable(&reply, &format!("plain {host}{path}"));
    }
}

#[tokio::test]
pub(crate) async fn http2_over_tls_is_negotiated_and_served() {
    let fleet = fleet().await;
    let mut conn = Conn::open(fleet.proxy.https.unwrap(), &fleet.h2(AUTH)).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    for realm in ["prod", "dev"] {
        let reply = conn
            .get(AUTH, &format!("/realms/{realm}/protocol/openid-connect/certs"))
            .await;
        assert_eq!(reply.version, Version::HTTP_2);
        assert_cacheable(&reply, "h2 jwks");
    }
}

#[tokio::test]
pub(crate) async fn conditional_and_head_requests() {
    let fleet = fleet().await;
    let mut conn = Conn::open(fleet.proxy.https.unwrap(), &fleet.https(GITLAB)).await;
    let full = conn.get(GITLAB, "/oauth/discovery/keys").await;
    let etag = full.header("etag").unwrap().to_owned();

    let not_modified = conn
        .send(
            Method::GET,
            GITLAB,
            "/oauth/discovery/keys",
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert!(not_modified
        .header("cache-control")
        .unwrap()
        .starts_with("public, max-age="));

    let weak_list = format!("\"nope\", W/{etag}");
    let also = conn
        .send(
            Method::GET,
            GITLAB,
            "/oauth/discovery/keys",
            &[("if-none-match", &weak_list)],
        )
        .await;
    assert_eq!(also.status, StatusCode::NOT_MODIFIED);

    let changed = conn
        .send(
            Method::GET,
            GITLAB,
            "/oauth/discovery/keys",
            &[("if-none-match", "\"other\"")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, full.body);

    let head = conn.send(Method::HEAD, GITLAB, "/oauth/discovery/keys", &[]).await;
    assert_cacheable(&head, "HEAD");
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    let preflight = conn
        .send(
            Method::OPTIONS,
            GITLAB,
            "/oauth/discovery/keys",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
}

#[tokio::test]
pub(crate) async fn everything_else_is_refused_without_naming_the_upstream() {
    let fleet = fleet().await;
    let addr = fleet.proxy.https.unwrap();
    let mut conn = Conn::open(addr, &fleet.https(GITLAB)).await;
    // Warm up so that the key set path is known and 404s are not "not ready".
    assert_eq!(
        conn.get(GITLAB, "/.well-known/openid-configuration").await.status,
        StatusCode::OK
    );
    let upstream_hits = fleet.gitlab.total_hits();

    let cases: [(Method, &str, &str, StatusCode); 9] = [
        (
            Method::GET,
            "unknown.example.com",
            "/.well-known/openid-configuration",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, GITLAB, "/users/sign_in", StatusCode::NOT_FOUND),
        (Method::GET, GITLAB, "/.well-known/jwks.json", StatusCode::NOT_FOUND),
        (
            Method::GET,
            GITLAB,
            "/.well-known/openid-configuration/",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            GITLAB,
            "/oauth/discovery/keys/../../api/v4/users",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, AUTH, "/realms/prod", StatusCode::NOT_FOUND),
        (
            Method::POST,
            GITLAB,
            "/oauth/discovery/keys",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            GITLAB,
            "/.well-known/openid-configuration",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::POST, GITLAB, "/oauth/token", StatusCode::NOT_FOUND),
    ];
    for (method, host, path, expected) in cases {
        let reply = conn.send(method.clone(), host, path, &[]).await;
        assert_eq!(reply.status, expected, "{method} {host}{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        assert!(body["error"].is_string(), "{body}");
        let text = String::from_utf8_lossy(&reply.body);
        assert!(
            !text.contains("127.0.0.1") && !text.contains("gitlab.internal"),
            "{text}"
        );
        if expected == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
        }
    }
    assert_eq!(
        fleet.gitlab.total_hits(),
        upstream_hits,
        "refused requests reached the upstream"
    );
}

#[tokio::test]
pub(crate) async fn proxy_shuts_down_cleanly() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder().issuer(Issuer::gitlab(&idp)).start().await;
    let addr = proxy.plain.unwrap();
    let admin = proxy.admin;
    eventually(Duration::from_secs(5), "readiness", async || {
        get(admin, &Transport::Plain, "localhost", "/readyz").await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        get(admin, &Transport::Plain, "localhost", "/healthz").await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}
