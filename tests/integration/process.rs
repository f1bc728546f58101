//! The `serve` process and its signals: SIGHUP reloads certificates, SIGTERM drains.

use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::Fault;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";

#[tokio::test]
async fn sigterm_completes_requests_in_flight_then_exits_0() {
    let idp = gitlab_idp().await;
    // Cold, slow upstream: a request waits ~1.5 s for the first copy (deadline 2 s).
    idp.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        Issuer::gitlab(&idp)
    );
    let mut serve = Serve::start(&config, 2);
    let addr = serve.addr("plain");

    // Open a connection and prove it is accepted, then start the slow request on it.
    let mut conn = Conn::open(addr, &Transport::Plain).await;
    assert_eq!(conn.get(GITLAB, "/nothing-here").await.status, StatusCode::NOT_FOUND);
    let in_flight = tokio::spawn(async move { conn.get(GITLAB, "/.well-known/openid-configuration").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.signal("TERM");

    // New connections are refused soon after the signal.
    eventually(Duration::from_secs(5), "the listener to close", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "the request in flight completed");
    let status = serve.exit_status(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let idp = gitlab_idp().await;
    let ca = TestCa::new("jwks-edge test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&[GITLAB]);
    let (cert, key) = first.write(dir.path(), "server");
    // Polling is off in effect (1 h), so only the signal can cause the reload.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = {cert:?}\nkey = {key:?}\nreload_interval = \"1h\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        Issuer::gitlab(&idp)
    );
    let mut serve = Serve::start(&config, 2);
    let addr = serve.addr("https");
    let transport = Transport::Tls {
        config: ca.client_config(&[b"http/1.1"]),
        sni: GITLAB.to_owned(),
    };
    assert_eq!(Conn::open(addr, &transport).await.peer_cert, Some(first.leaf()));

    let second = ca.issue(&[GITLAB]);
    second.write(dir.path(), "server");
    serve.signal("HUP");
    eventually(Duration::from_secs(10), "the reloaded certificate", async || {
        Conn::open(addr, &transport).await.peer_cert == Some(second.leaf())
    })
    .await;
    serve.signal("INT");
    assert_eq!(serve.exit_status(Duration::from_secs(15)).await.code(), Some(0));
}

#[tokio::test]
async fn json_logs_parse_and_carry_the_access_log() {
    let idp = gitlab_idp().await;
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        Issuer::gitlab(&idp)
    );
    let serve = Serve::start_with(&["--log-format", "json"], &config, 2);
    let addr = serve.addr("plain");
    until_served(addr, GITLAB, "/oauth/discovery/keys").await;
    let access = serve.logged_event(|event| event["target"] == "jwks_edge::access").await;
    assert_eq!(access["level"], "INFO");
    let fields = &access["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["host"], GITLAB);
    assert_eq!(fields["status"], 200);
    assert!(fields["micros"].is_u64());
    assert!(
        access["span"]["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{access}"
    );
    for line in serve.log.lock().unwrap().iter() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn the_access_log_can_be_switched_off() {
    let idp = gitlab_idp().await;
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n{}",
        Issuer::gitlab(&idp)
    );
    let mut serve = Serve::start_with(&["--log-format", "json"], &config, 2);
    let addr = serve.addr("plain");
    until_served(addr, GITLAB, "/oauth/discovery/keys").await;
    for _ in 0..5 {
        get(addr, &Transport::Plain, GITLAB, "/.well-known/openid-configuration").await;
    }
    // Stop the process: everything it logged is flushed by the time it says "stopped".
    serve.signal("TERM");
    assert_eq!(serve.exit_status(Duration::from_secs(15)).await.code(), Some(0));
    serve
        .logged_event(|event| event["fields"]["message"] == "stopped")
        .await;
    let log = serve.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("key set mapped")),
        "the log is flowing: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("jwks_edge::access")),
        "no access lines with [log] access = false"
    );
}

#[tokio::test]
async fn an_issuer_named_by_its_internal_url_is_published_unchanged_and_reported() {
    // A Keycloak realm reached on its backend URL and without a frontend URL names
    // itself by that backend URL, which lies under the configured upstream base.
    let idp = fake_idp().await;
    let backend = format!("{}/realms/prod", idp.base_url());
    idp.put(
        "/realms/prod/.well-known/openid-configuration",
        jwks_edge::fake_idp::Resource::json_with_idp_headers(format!(
            r#"{{"issuer":"{backend}","jwks_uri":"{backend}/certs","token_endpoint":"{backend}/token"}}"#
        )),
    );
    idp.put(
        "/realms/prod/certs",
        jwks_edge::fake_idp::Resource::json_with_idp_headers(fixture("keycloak/jwks.json")),
    );
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        Issuer::new("https://auth.example.com/realms/prod", &backend).name("prod")
    );
    let serve = Serve::start_with(&["--log-format", "json"], &config, 2);
    let discovery = "/realms/prod/.well-known/openid-configuration";
    until_served(serve.addr("plain"), "auth.example.com", discovery).await;
    until_served(serve.addr("plain"), "auth.example.com", "/realms/prod/certs").await;

    let reply = get(serve.addr("plain"), &Transport::Plain, "auth.example.com", discovery).await;
    let document = reply.json();
    assert_eq!(document["issuer"], backend.as_str(), "issuer is never rewritten");
    assert_eq!(document["token_endpoint"], "https://auth.example.com/realms/prod/token");

    let error = serve.logged_event(|event| event["level"] == "ERROR").await;
    let fields = &error["fields"];
    assert_eq!(fields["upstream_issuer"], backend.as_str(), "{error}");
    assert_eq!(fields["public_url"], "https://auth.example.com/realms/prod", "{error}");
    let message = fields["message"].as_str().unwrap();
    assert!(
        message.contains("Keycloak")
            && message.contains("--service-account-issuer")
            && message.contains("external_url"),
        "names the IdP settings that fix it: {message}"
    );

    let (status, body) = readyz(serve.addr("admin")).await;
    assert_eq!(status, StatusCode::OK, "the document can be served: {body}");
    let mismatch = &body["issuers"][0]["issuer_mismatch"];
    assert_eq!(mismatch["upstream_issuer"], backend.as_str(), "{body}");
    let reply = get(
        serve.addr("admin"),
        &Transport::Plain,
        "localhost",
        "/readyz?issuer=prod",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["status"], "issuer_mismatch");
    let metrics = get(serve.addr("admin"), &Transport::Plain, "localhost", "/metrics").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(text.contains("jwks_edge_issuer_mismatch{issuer=\"prod\"} 1"), "{text}");
    // Once per change: refreshes of the same document log no further ERROR.
    let errors = |serve: &Serve| {
        serve
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .count()
    };
    assert_eq!(errors(&serve), 1);
}
