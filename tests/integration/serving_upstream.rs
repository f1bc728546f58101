//! Where serving meets the upstream: client traffic never drives fetches, cold requests
//! share one fetch, and a bad upstream answer is never served nor replaces a good copy.

use std::time::Duration;

use http::{Method, StatusCode};
use jwks_edge::fake_idp::Fault;

use crate::support::*;

use crate::serving::*;

#[tokio::test]
async fn client_traffic_does_not_drive_upstream_traffic() {
    let fleet = fleet().await;
    let addr = fleet.proxy.https.unwrap();
    let before = fleet.gitlab.total_hits();
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..10 {
        let transport = fleet.https(GITLAB);
        tasks.spawn(async move {
            let mut conn = Conn::open(addr, &transport).await;
            for i in 0..100 {
                let path = if i % 2 == 0 {
                    "/oauth/discovery/keys"
                } else {
                    "/.well-known/openid-configuration"
                };
                // Query strings and client headers cannot force a fetch, nor be forwarded.
                let path = format!("{path}?nocache={worker}-{i}");
                let reply = conn
                    .send(
                        Method::GET,
                        GITLAB,
                        &path,
                        &[
                            ("cache-control", "no-cache"),
                            ("authorization", "Bearer secret"),
                            ("cookie", "a=b"),
                        ],
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let fetched = fleet.gitlab.total_hits() - before;
    // With a 60 s refresh period, only a cold start fetch can happen during the burst,
    // plus at most one key set revalidation per revalidate_after (5 s) of it, however
    // many requests, query strings and no-cache headers arrive.
    let revalidations = started.elapsed().as_secs() / 5 + 1;
    assert!(
        fetched <= 4 + revalidations,
        "1000 client requests in {:?} caused {fetched} upstream requests",
        started.elapsed()
    );
    let seen = fleet.gitlab.last_request_headers();
    for name in ["authorization", "cookie", "cache-control"] {
        assert!(seen.get(name).is_none(), "client header {name} reached the upstream");
    }
}

#[tokio::test]
async fn concurrent_cold_requests_share_one_fetch() {
    let idp = gitlab_idp().await;
    // Discovery then key set, 500 ms each: the first copy arrives after about 1 s, well
    // inside the 2 s deadline and long after all 50 requests are sent.
    idp.set_fault(Fault::Delay(Duration::from_millis(500)));
    let proxy = Proxy::builder().issuer(Issuer::gitlab(&idp)).start().await;
    let addr = proxy.plain.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        tasks.spawn(async move { get(addr, &Transport::Plain, GITLAB, "/oauth/discovery/keys").await });
    }
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            reply.header("cache-status"),
            Some("jwks-edge; fwd=miss; collapsed; stored"),
            "every request waited for the one fetch"
        );
    }
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/oauth/discovery/keys"), 1);
}

#[tokio::test]
async fn invalid_upstream_documents_are_never_served() {
    let cases: [(&str, Fault); 4] = [
        ("html", Fault::Html),
        ("empty keys", Fault::Body(r#"{"keys":[]}"#.into())),
        (
            "discovery without jwks_uri",
            Fault::Body(r#"{"issuer":"https://gitlab.example.com"}"#.into()),
        ),
        ("server error", Fault::Status(500)),
    ];
    for (what, fault) in cases {
        let idp = gitlab_idp().await;
        idp.set_fault(fault);
        let proxy = Proxy::builder()
            .issuer(Issuer::gitlab(&idp).public_jwks_path("/oauth/discovery/keys"))
            .deadline("300ms")
            .start()
            .await;
        let addr = proxy.plain.unwrap();
        for path in ["/.well-known/openid-configuration", "/oauth/discovery/keys"] {
            let started = tokio::time::Instant::now();
            let reply = get(addr, &Transport::Plain, GITLAB, path).await;
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{what} {path}: {reply:?}"
            );
            assert_eq!(reply.json()["error"], "not_ready", "{what}");
            assert!(reply.header("retry-after").is_some());
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{what}: answered after the deadline"
            );
        }
        assert!(idp.total_hits() >= 1, "{what}: the upstream was asked");
        // Once the upstream is fixed, the documents appear without a restart.
        idp.set_fault(Fault::None);
        eventually(Duration::from_secs(10), "recovery", async || {
            get(addr, &Transport::Plain, GITLAB, "/oauth/discovery/keys")
                .await
                .status
                == StatusCode::OK
        })
        .await;
    }
}

#[tokio::test]
async fn a_bad_answer_never_replaces_a_good_copy() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, "/oauth/discovery/keys").await;
    let good = get(addr, &Transport::Plain, GITLAB, "/oauth/discovery/keys").await.body;
    idp.set_fault(Fault::Body(r#"{"keys":[]}"#.into()));
    let hits = idp.hits("/oauth/discovery/keys");
    eventually(Duration::from_secs(10), "a refused refresh", async || {
        idp.hits("/oauth/discovery/keys") > hits
    })
    .await;
    let reply = get(addr, &Transport::Plain, GITLAB, "/oauth/discovery/keys").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, good);
}
