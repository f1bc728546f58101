//! Start-up without a thundering herd: a fleet of issuers on one upstream never has more
//! than `cache.max_fetches_per_upstream` fetches in flight there, all still become
//! ready without a retry, and a fetch queued behind a hung upstream still ends.

use std::net::SocketAddr;
use std::time::Duration;

use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};

use crate::support::*;

/// One fake IdP serving `count` Kubernetes-shaped issuers, `n` under `/h{n}`.
async fn fleet_idp(count: usize) -> FakeIdp {
    let idp = fake_idp().await;
    serve_fleet(&idp, count);
    idp
}

/// Puts the documents of `count` issuers on `idp`, each naming itself by its public URL.
fn serve_fleet(idp: &FakeIdp, count: usize) {
    let discovery = fixture("kubernetes/openid-configuration.json");
    let jwks = fixture("kubernetes/jwks.json");
    for n in 0..count {
        let own = discovery.replace("https://oidc.k8s.example.com", &format!("https://h{n}.example.test"));
        idp.put(
            &format!("/h{n}/.well-known/openid-configuration"),
            Resource::json_with_idp_headers(own),
        );
        idp.put(
            &format!("/h{n}/openid/v1/jwks"),
            Resource::json_with_idp_headers(jwks.clone()),
        );
    }
}

fn fleet(idp: &FakeIdp, count: usize) -> ProxyBuilder {
    (0..count).fold(Proxy::builder(), |builder, n| {
        builder.issuer(
            Issuer::new(
                &format!("https://h{n}.example.test"),
                &format!("{}/h{n}", idp.base_url()),
            )
            .name(&format!("h{n}")),
        )
    })
}

async fn until_fresh(admin: SocketAddr, limit: Duration) {
    Wait::up_to(limit)
        .every(Duration::from_millis(200))
        .until("every document to be fresh", async || {
            let (_, body) = readyz(admin).await;
            body["status"] == "fresh" && body["document_states"]["fresh"] == body["documents"]
        })
        .await;
}

const FLEET: usize = 50;
const BOUND: u32 = 4;
/// Each answer takes this long, so fetches overlap and the queue is long: 100 documents
/// in rounds of `BOUND` take about 25 × 150 ms, well past the fetch timeout below.
const DELAY: Duration = Duration::from_millis(150);

#[tokio::test]
async fn a_fleet_on_one_slow_upstream_never_sees_more_than_the_bound_and_retries_nothing() {
    let idp = fleet_idp(FLEET).await;
    idp.set_fault(Fault::Delay(DELAY));
    // The queue (seconds) is longer than fetch_timeout: the wait for a permit must not
    // count against it, or fetches at the back would time out and be retried.
    let proxy = fleet(&idp, FLEET)
        .max_fetches_per_upstream(BOUND)
        .fetch_timeout("1s")
        .startup_grace("2m")
        .start()
        .await;
    until_fresh(proxy.admin, Duration::from_secs(90)).await;

    let most = idp.max_concurrent_requests();
    assert!(most <= u64::from(BOUND), "{most} requests at once, bound {BOUND}");
    // With a queue this long, every permit was in use at some moment.
    assert_eq!(
        most,
        u64::from(BOUND),
        "the bound was never reached: fetches ran one by one?"
    );
    // One fetch per document: nothing failed, nothing was retried.
    assert_eq!(idp.total_hits(), 2 * FLEET as u64);
    let (_, detail) = readyz_detail(proxy.admin).await;
    for issuer in detail["issuers"].as_array().unwrap() {
        for document in ["discovery", "jwks"] {
            assert_eq!(issuer[document]["failures_total"], 0, "{issuer}");
        }
    }
    proxy.shutdown().await;
}

/// The counter above can see more than the bound: with a loose bound, it does.
#[tokio::test]
async fn with_a_loose_bound_the_same_fleet_sends_more_at_once() {
    let idp = fleet_idp(FLEET).await;
    idp.set_fault(Fault::Delay(DELAY));
    let proxy = fleet(&idp, FLEET)
        .max_fetches_per_upstream(64)
        .fetch_timeout("5s")
        .startup_grace("2m")
        .start()
        .await;
    until_fresh(proxy.admin, Duration::from_secs(90)).await;
    let most = idp.max_concurrent_requests();
    assert!(
        most > u64::from(BOUND),
        "only {most} requests at once without a tight bound"
    );
    assert!(most <= 64, "{most} requests at once, bound 64");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_fetch_queued_behind_a_hung_upstream_still_ends_and_says_why() {
    let idp = fleet_idp(3).await;
    idp.set_fault(Fault::Hang);
    // The permit wait is bounded by the refresh period (1s here); each holder by
    // fetch_timeout (1s): with one permit, the fetches behind the first give up.
    let proxy = fleet(&idp, 3)
        .max_fetches_per_upstream(1)
        .fetch_timeout("1s")
        .refresh("1s")
        .start()
        .await;
    let admin = proxy.admin;
    Wait::up_to(Duration::from_secs(30))
        .every(Duration::from_millis(200))
        .until("a queued fetch to fail naming the bound", async || {
            let (_, detail) = readyz_detail(admin).await;
            detail["issuers"].as_array().unwrap().iter().any(|issuer| {
                issuer["discovery"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("cache.max_fetches_per_upstream"))
            })
        })
        .await;
    assert_eq!(idp.max_concurrent_requests(), 1);
    // And once the upstream answers again, every issuer recovers.
    idp.set_fault(Fault::None);
    until_fresh(admin, Duration::from_secs(30)).await;
    assert_eq!(idp.max_concurrent_requests(), 1);
    proxy.shutdown().await;
}

/// Start-up with many issuers on a failing upstream, and many whose upstream names
/// itself otherwise, logs one line per kind of problem with a count, not one per issuer.
#[tokio::test]
async fn start_up_problems_are_logged_once_per_kind_with_a_count() {
    const BROKEN: usize = 30;
    const MISMATCHED: usize = 10;
    let healthy = fleet_idp(3 + MISMATCHED).await;
    let broken = fake_idp().await;
    broken.set_fault(Fault::Status(503));
    let mut config = "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    for n in 0..3 {
        let issuer = Issuer::new(
            &format!("https://h{n}.example.test"),
            &format!("{}/h{n}", healthy.base_url()),
        )
        .name(&format!("h{n}"));
        config.push_str(&issuer.to_string());
    }
    // These upstreams say they are `https://h{n}.example.test`.
    for n in 3..3 + MISMATCHED {
        let issuer = Issuer::new(
            &format!("https://m{n}.example.test"),
            &format!("{}/h{n}", healthy.base_url()),
        )
        .name(&format!("m{n}"));
        config.push_str(&issuer.to_string());
    }
    for n in 0..BROKEN {
        let issuer = Issuer::new(
            &format!("https://b{n}.example.test"),
            &format!("{}/b{n}", broken.base_url()),
        )
        .name(&format!("b{n}"));
        config.push_str(&issuer.to_string());
    }
    let serve = Serve::start_with(&["--log-format", "json"], &config, 2);
    let summary = serve
        .logged_event(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("failed their first fetch"))
        })
        .await;
    assert_eq!(summary["level"], "WARN", "{summary}");
    assert_eq!(summary["fields"]["count"], BROKEN, "{summary}");
    assert_eq!(summary["fields"]["reason"], "status", "{summary}");
    let message = summary["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("b0 discovery") && message.contains("and 25 more"),
        "{message}"
    );
    assert!(
        summary["fields"]["example"].as_str().unwrap().contains("503"),
        "{summary}"
    );
    let ended = serve
        .logged_event(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("first fetch of every document ended"))
        })
        .await;
    assert_eq!(ended["fields"]["ok"], 2 * (3 + MISMATCHED), "{ended}");
    assert_eq!(ended["fields"]["blocked"], BROKEN, "{ended}");
    // Let the broken ones retry a few times (1 s, 2 s...): still no line per document.
    let hits = broken.total_hits();
    eventually(
        Duration::from_secs(20),
        "the broken issuers to be retried",
        async || broken.total_hits() >= hits + 2 * BROKEN as u64,
    )
    .await;
    let log = serve.log.lock().unwrap().clone();
    let per_document: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("upstream fetch failed"))
        .collect();
    assert!(per_document.is_empty(), "{per_document:#?}");
    let summaries = log.iter().filter(|l| l.contains("failed their first fetch")).count();
    assert_eq!(summaries, 1, "{log:#?}");
    let errors: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["level"] == "ERROR")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one ERROR line for all mismatched issuers: {errors:#?}"
    );
    assert_eq!(errors[0]["fields"]["count"], MISMATCHED, "{errors:#?}");
    let message = errors[0]["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("m3 (upstream says \"https://h3.example.test\")")
            && message.contains("and 5 more")
            && message.contains("--service-account-issuer"),
        "{message}"
    );
}

/// Start-up figures for a fleet of 1,000 issuers on one upstream whose listen backlog is
/// small (32, like a simple threaded IdP's) and which answers in 10 ms, the default
/// bound against an effectively unbounded one. A measurement, not a test of speed: `cargo test --test integration
/// fleet_of_1000_start_up_figures -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; prints figures"]
async fn fleet_of_1000_start_up_figures() {
    const COUNT: usize = 1000;
    for bound in [8u32, 1024] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let idp = FakeIdp::serve(socket.listen(32).unwrap()).unwrap();
        serve_fleet(&idp, COUNT);
        // A real IdP takes a few milliseconds per answer.
        idp.set_fault(Fault::Delay(Duration::from_millis(10)));
        let started = std::time::Instant::now();
        let proxy = fleet(&idp, COUNT)
            .max_fetches_per_upstream(bound)
            .startup_grace("5m")
            .start()
            .await;
        until_fresh(proxy.admin, Duration::from_secs(240)).await;
        println!(
            "bound {bound}: ready after {:.2?}, {} upstream requests for {} documents, at most {} at once",
            started.elapsed(),
            idp.total_hits(),
            2 * COUNT,
            idp.max_concurrent_requests()
        );
        proxy.shutdown().await;
    }
}
