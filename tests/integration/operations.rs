//! Operations: Prometheus metrics, admin actions, the Kubernetes config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use jwks_edge::fake_idp::{Fault, Resource};

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const KEYS: &str = "/oauth/discovery/keys";

/// Parses the text exposition format strictly enough to catch a malformed line, and
/// returns every sample by its full name with labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    assert!(text.ends_with("# EOF\n"), "exposition ends with # EOF");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "info"].contains(&kind),
                "unknown type in {line:?}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("jwks_edge_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "labels in {line:?}");
            }
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_info"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            typed.contains(family) || typed.contains(name),
            "sample without TYPE: {line:?}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

pub(crate) async fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let reply = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
    parse_metrics(std::str::from_utf8(&reply.body).unwrap())
}

pub(crate) fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests_and_failures() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp).name("gitlab"))
        .refresh("1s")
        .fetch_timeout("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let hits = r#"jwks_edge_requests_total{issuer="gitlab",document="jwks",status="200",cache_status="hit"}"#;
    let missing = r#"jwks_edge_requests_total{issuer="",document="none",status="404",cache_status="none"}"#;
    let failed = r#"jwks_edge_upstream_fetches_total{issuer="gitlab",document="jwks",outcome="status"}"#;
    let before = metrics(proxy.admin).await;
    let mut conn = Conn::open(addr, &Transport::Plain).await;
    for _ in 0..5 {
        assert_eq!(conn.get(GITLAB, KEYS).await.status, StatusCode::OK);
    }
    assert_eq!(conn.get(GITLAB, "/nope").await.status, StatusCode::NOT_FOUND);
    let after = metrics(proxy.admin).await;
    assert!(sample(&after, hits) >= sample(&before, hits) + 5.0, "{hits}");
    assert_eq!(sample(&after, missing), sample(&before, missing) + 1.0, "{missing}");
    assert!(
        sample(
            &after,
            r#"jwks_edge_upstream_fetches_total{issuer="gitlab",document="jwks",outcome="ok"}"#
        ) >= 1.0
    );
    assert!(sample(&after, r#"jwks_edge_open_connections{listener="plain"}"#) >= 1.0);
    assert!(after.contains_key(r#"jwks_edge_document_age_seconds{issuer="gitlab",document="jwks"}"#));
    assert!(
        sample(
            &after,
            r#"jwks_edge_upstream_last_success_timestamp_seconds{issuer="gitlab",document="jwks"}"#
        ) > 1.6e9
    );
    assert!(sample(&after, r#"jwks_edge_request_duration_seconds_count{document="jwks"}"#) >= 5.0);
    assert!(after.keys().any(|k| k.starts_with("jwks_edge_build_info")));

    idp.set_fault(Fault::Status(500));
    eventually(Duration::from_secs(10), "a counted failure", async || {
        sample(&metrics(proxy.admin).await, failed) >= 1.0
    })
    .await;
    // Served stale eventually, and counted as such.
    eventually(Duration::from_secs(10), "a stale response", async || {
        get(addr, &Transport::Plain, GITLAB, KEYS).await;
        sample(
            &metrics(proxy.admin).await,
            r#"jwks_edge_stale_responses_total{issuer="gitlab",document="jwks"}"#,
        ) >= 1.0
    })
    .await;
}

#[tokio::test]
async fn certificate_expiry_and_handshake_failures_are_exported() {
    let idp = gitlab_idp().await;
    let certs = std::sync::Arc::new(TestCerts::for_hosts(&[GITLAB]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .tls(certs.clone())
        .start()
        .await;
    // A plain-text client on the TLS port fails its handshake.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(proxy.https.unwrap()).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut buf)).await;
    }
    let failures = r#"jwks_edge_tls_handshake_failures_total{listener="https",reason="error"}"#;
    eventually(Duration::from_secs(5), "a counted handshake failure", async || {
        sample(&metrics(proxy.admin).await, failures) >= 1.0
    })
    .await;
    let samples = metrics(proxy.admin).await;
    let expiry = samples
        .iter()
        .find(|(k, _)| k.starts_with("jwks_edge_certificate_expiry_timestamp_seconds{"))
        .map(|(_, v)| *v)
        .expect("a certificate expiry gauge");
    assert!(expiry > 1.7e9, "{expiry}");
    assert!(
        sample(
            &samples,
            r#"jwks_edge_tls_handshake_failures_total{listener="https",reason="error"}"#
        ) >= 1.0
    );
}

pub(crate) async fn post(admin: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let mut conn = Conn::open(admin, &Transport::Plain).await;
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    conn.send(Method::POST, "localhost", path, &headers).await
}

fn key_set(kid: &str) -> Resource {
    // A usable public key: a set without one is refused (key_hygiene).
    Resource::json_with_idp_headers(format!(
        r#"{{"keys":[{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"AA","y":"AA"}}]}}"#
    ))
}

#[tokio::test]
async fn admin_refresh_requires_the_token_and_fetches_at_once() {
    let idp = gitlab_idp().await;
    idp.put(KEYS, key_set("before"));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp).name("gitlab"))
        .issuer(Issuer::new("https://other.example.com", &idp.base_url()).name("other"))
        .refresh("1h")
        .admin_token_file(&token)
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;

    assert_eq!(
        post(proxy.admin, "/admin/refresh", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = post(proxy.admin, "/admin/refresh", Some("guess")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let unknown = post(proxy.admin, "/admin/refresh?issuer=nope", Some("s3cret")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let get_refresh = get(proxy.admin, &Transport::Plain, "localhost", "/admin/refresh").await;
    assert_eq!(
        get_refresh.status,
        StatusCode::UNAUTHORIZED,
        "authorization comes before the method"
    );
    // Authorized, with the wrong method: the 405 names the one method each path is served with.
    let mut conn = Conn::open(proxy.admin, &Transport::Plain).await;
    for path in ["/admin/refresh", "/admin/drop-retained"] {
        let reply = conn
            .send(Method::GET, "localhost", path, &[("authorization", "Bearer s3cret")])
            .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(reply.header("allow"), Some("POST"), "{path}");
        assert_eq!(reply.json()["error"], "method_not_allowed", "{path}");
        assert_eq!(reply.json()["message"], "only POST is served", "{path}");
    }
    let post_healthz = post(proxy.admin, "/healthz", None).await;
    assert_eq!(post_healthz.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_healthz.header("allow"), Some("GET, HEAD"));
    assert_eq!(post_healthz.json()["message"], "only GET and HEAD are served");

    // Keys rotate upstream; with a 1 h refresh period only the admin action explains a change.
    idp.put(KEYS, key_set("after"));
    let reply = post(proxy.admin, "/admin/refresh?issuer=gitlab", Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["issuers"].as_array().unwrap().len(), 1);
    assert_eq!(body["issuers"][0]["jwks"]["ok"], true);
    let keys = get(addr, &Transport::Plain, GITLAB, KEYS).await.json();
    assert_eq!(keys["keys"][0]["kid"], "after");

    // All issuers, with a failing upstream: 502 and the reasons.
    idp.set_fault(Fault::Status(503));
    let reply = post(proxy.admin, "/admin/refresh", Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let body = reply.json();
    assert_eq!(body["issuers"].as_array().unwrap().len(), 2);
    assert!(
        body["issuers"][1]["discovery"]["error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{body}"
    );
    // …and the good copy is still served.
    assert_eq!(
        get(addr, &Transport::Plain, GITLAB, KEYS).await.json()["keys"][0]["kid"],
        "after"
    );

    // The public listener never serves admin paths.
    let public = post(addr, "/admin/refresh", Some("s3cret")).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_actions_are_off_without_a_token_file() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder().issuer(Issuer::gitlab(&idp)).start().await;
    assert_eq!(
        post(proxy.admin, "/admin/refresh", Some("anything")).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The `config.toml` literal block of the Kubernetes ConfigMap.
fn configmap_config() -> String {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/configmap.yaml")).unwrap();
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config.toml: |"));
    let header = lines.next().expect("a config.toml: | block");
    let key_indent = header.len() - header.trim_start().len();
    let mut block = String::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= key_indent {
            break;
        }
        block.push_str(line.get(key_indent + 2..).unwrap_or(""));
        block.push('\n');
    }
    block
}

#[test]
fn the_kubernetes_config_passes_validation() {
    let text = configmap_config();
    let config = jwks_edge::config::Config::from_toml(&text, std::path::Path::new("/etc/jwks-edge"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.admin.listen.port(), 9090);
    assert!(
        config.admin.listen.ip().is_unspecified(),
        "probes reach the admin port from outside the pod"
    );
    assert!(config.server.tls.is_some());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
