//! `jwks-edge publish` without a store: exit 2 on a config error (or a sink the environment
//! cannot set up), and a sink that cannot be reached retried and reported (`--once` exits
//! 1; `serve` stays ready).

use std::time::Duration;

use super::*;

/// Credentials for a sink nobody answers at: without them the S3 client would ask the
/// instance metadata service, which is no loopback address.
fn fake_aws() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

#[tokio::test]
async fn publish_exits_2_on_a_config_error_or_without_a_sink() {
    let idp = gitlab_idp().await;
    let issuer = Issuer::gitlab(&idp).name("gitlab");
    for (config, expected) in [
        (
            format!("{issuer}[[publish]]\nurl = \"ftp://bucket\"\n"),
            "publish[0].url = \"ftp://bucket\"",
        ),
        (
            format!("{issuer}[[publish]]\nurl = \"s3://bucket\"\nissuers = [\"nope\"]\n"),
            "publish[0].issuers = \"nope\"",
        ),
        (
            format!("[server]\nlisten_plain = \"127.0.0.1:0\"\n{issuer}"),
            "no [[publish]] section",
        ),
        // Azure needs its account from the environment, which has none here.
        (
            format!("{issuer}[[publish]]\nurl = \"az://docs\"\n"),
            "cannot set up publish[0]: cannot set up az://docs",
        ),
    ] {
        let run = publish_once(&config, &fake_aws()).await;
        assert_eq!(run.code, Some(2), "{config}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
    }
}

#[tokio::test]
async fn an_unreachable_sink_is_retried_and_reported_and_never_affects_serving() {
    let idp = gitlab_idp().await;
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let url = "s3://nobody-home/oidc";
    let publish = format!("[[publish]]\nurl = {url:?}\nendpoint = {endpoint:?}\n");
    let issuer = Issuer::gitlab(&idp).name("gitlab");

    // The serving replicas' certificates are not here, and `publish` needs none.
    let tls = "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n";
    let run = publish_once(&format!("{tls}{issuer}{publish}"), &fake_aws()).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        line.contains(url) && line.contains("\"gitlab\""),
        "names the sink: {line}"
    );
    assert!(line.contains("(after 3 attempts)"), "retried: {line}");
    assert!(
        line.contains("cannot read object oidc/oauth/discovery/keys"),
        "the reason: {line}"
    );

    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\nrefresh = \"2s\"\n{issuer}{publish}"
    );
    let serve = Serve::run(&[], "serve", &fake_aws(), &config, 2);
    let admin = serve.addr("admin");
    let sink = eventually(Duration::from_secs(20), "two failed attempts in /readyz", async || {
        let reply = get(admin, &Transport::Plain, "localhost", "/readyz?issuer=gitlab").await;
        let sink = reply.json()["issuers"][0]["publish"][0].clone();
        (sink["consecutive_failures"].as_u64() >= Some(2)).then_some(sink)
    })
    .await;
    assert_eq!(sink["sink"], url);
    assert!(sink["last_success"].is_null());
    assert!(
        sink["last_error"].as_str().unwrap().contains("cannot read object"),
        "{sink}"
    );
    let (status, summary) = readyz(admin).await;
    assert_eq!(
        status,
        http::StatusCode::OK,
        "a failing sink never takes serving out: {summary}"
    );
    assert_eq!(summary["publish"]["sinks_failing"], 1, "{summary}");
    until_served(serve.addr("plain"), "gitlab.example.com", "/oauth/discovery/keys").await;
    let metrics = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(&format!(
            "jwks_edge_publish_uploads_total{{sink=\"{url}\",issuer=\"gitlab\",outcome=\"failed\"}}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("jwks_edge_publish_last_success_age_seconds{"),
        "no success yet: {text}"
    );
}
