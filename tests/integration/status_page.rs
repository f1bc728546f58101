//! The status page at `/` on the admin listener: a healthy and a failing issuer as text
//! (marks, timeline, kids, escaping, headers), and "did the cloud reach us?" per family.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use jwks_edge::fake_idp::Fault;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const GITLAB_KEYS: &str = "/oauth/discovery/keys";
const K8S: &str = "oidc.k8s.example.com";
/// What the failing upstream's redirect carries into the error text the page shows.
const HOSTILE: &str = "<script>alert(1)</script>";

pub(crate) async fn page(admin: SocketAddr, path: &str) -> Reply {
    get(admin, &Transport::Plain, "localhost", path).await
}

fn text(reply: &Reply) -> &str {
    std::str::from_utf8(&reply.body).unwrap()
}

/// A healthy GitLab-shaped issuer `gitlab` and a Kubernetes-shaped `k8s` whose upstream,
/// once served, answers every fetch with a redirect to a hostile location; returned once
/// `k8s` is served stale (two seconds after its last success), so its state holds still.
pub(crate) async fn healthy_and_failing() -> (Proxy, jwks_edge::fake_idp::FakeIdp, jwks_edge::fake_idp::FakeIdp) {
    let gitlab = gitlab_idp().await;
    let k8s = kubernetes_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&gitlab).name("gitlab"))
        .issuer(Issuer::kubernetes(&k8s).name("k8s"))
        .refresh("1s")
        .fetch_timeout("1s")
        .start()
        .await;
    let plain = proxy.plain.unwrap();
    until_served(plain, GITLAB, GITLAB_KEYS).await;
    until_served(plain, K8S, "/openid/v1/jwks").await;
    k8s.set_fault(Fault::Redirect(format!("https://evil.example/{HOSTILE}")));
    eventually(Duration::from_secs(15), "k8s to fail twice and go stale", async || {
        let (_, body) = readyz(proxy.admin).await;
        let k8s = &body["issuers"][0];
        k8s["name"] == "k8s"
            && k8s["attention"] == "stale"
            && k8s["jwks"]["consecutive_failures"].as_u64() >= Some(2)
            && k8s["discovery"]["consecutive_failures"].as_u64() >= Some(2)
    })
    .await;
    (proxy, gitlab, k8s)
}

#[tokio::test]
async fn the_page_marks_the_failing_issuer_and_escapes_what_upstreams_say() {
    let (proxy, _gitlab, _k8s) = healthy_and_failing().await;

    let summary = page(proxy.admin, "/").await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = summary.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(summary.header("x-content-type-options"), Some("nosniff"));
    let html = text(&summary);
    assert!(
        html.contains("<h2 id=\"attention\">Needing attention (1)</h2>"),
        "{html}"
    );
    // The failing issuer is in the attention table, marked; the healthy one only in the list.
    assert!(
        html.contains("<a class=\"stale\" href=\"/?issuer=k8s\">k8s</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a class=\"ok\" href=\"/?issuer=gitlab\">gitlab</a>"),
        "{html}"
    );
    assert!(!html.contains(HOSTILE), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script"), "{html}");

    let detail = page(proxy.admin, "/?issuer=k8s").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.header("content-security-policy").is_some());
    let html = text(&detail);
    assert!(html.contains("<span class=\"attention stale\">stale</span>"), "{html}");
    assert!(html.contains("<svg class=\"timeline\""), "{html}");
    assert!(html.contains("class=\"fetch-ok\""), "{html}");
    assert!(html.contains("class=\"fetch-failed\""), "{html}");
    for kid in [
        "dLpmcNHM-0qvwfmFC2aJWU1hHfEZ7-piIoHDeMwoqd0",
        "w_otVYELxMJdX5pGiv9G1Bj0E7wnFAY3X6DRXDeCEHo",
    ] {
        assert!(
            html.contains(&format!("<code class=\"kid\">{kid}</code>")),
            "{kid}\n{html}"
        );
    }
    assert!(
        html.contains("<code>dLpmcNHM-0qvwfmFC2aJWU1hHfEZ7-piIoHDeMwoqd0</code> published</li>"),
        "{html}"
    );
    assert!(!html.contains(HOSTILE), "{html}");
    assert!(html.contains("redirect to"), "{html}");

    let healthy = text(&page(proxy.admin, "/?issuer=gitlab").await).to_owned();
    assert!(healthy.contains("<span class=\"attention ok\">ok</span>"), "{healthy}");
    assert!(!healthy.contains("class=\"fetch-failed\""), "{healthy}");

    let blank = page(proxy.admin, "/?issuer=").await;
    assert!(
        text(&blank).contains("Needing attention (1)"),
        "the form sent blank: the summary"
    );

    let unknown = page(proxy.admin, "/?issuer=%3Cb%3Enobody").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(text(&unknown).contains("&lt;b&gt;nobody"), "{}", text(&unknown));

    // Only GET and HEAD; like /readyz, no token is asked for.
    let mut conn = Conn::open(proxy.admin, &Transport::Plain).await;
    let post = conn.send(Method::POST, "localhost", "/", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn relying_parties_are_counted_by_family_and_never_by_their_raw_user_agent() {
    let (proxy, _gitlab, _k8s) = healthy_and_failing().await;
    let plain = proxy.plain.unwrap();
    let agents = [
        "kube-apiserver/v1.30.2 (linux/amd64) kubernetes/3917a72",
        "Vault/1.17.2 (+https://www.vaultproject.io/; go1.22.5)",
        "Vault/1.17.2 (+https://www.vaultproject.io/; go1.22.5)",
        "curl/8.5.0",
        "<i>evil-agent</i>",
    ];
    let mut conn = Conn::open(plain, &Transport::Plain).await;
    for agent in agents {
        let reply = conn
            .send(Method::GET, GITLAB, GITLAB_KEYS, &[("user-agent", agent)])
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }

    let reply = get(proxy.admin, &Transport::Plain, "localhost", "/readyz?issuer=gitlab").await;
    let body = reply.json();
    let reach = &body["issuers"][0]["jwks"]["relying_parties"];
    let count = |family: &str| {
        reach["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["family"] == family)
            .map(|f| f["requests"].as_u64().unwrap())
    };
    assert_eq!(count("kubernetes"), Some(1), "{reach}");
    assert_eq!(count("vault"), Some(2), "{reach}");
    assert_eq!(count("curl"), Some(1), "{reach}");
    assert_eq!(count("other"), Some(1), "{reach}");
    assert_eq!(count("aws"), None, "{reach}");
    assert!(reach["last_seen"].is_string(), "{reach}");
    assert_eq!(reach["unavailable_served"], 0, "{reach}");
    // The full survey shows the same.
    let (_, full) = readyz_detail(proxy.admin).await;
    assert_eq!(full["issuers"][0]["jwks"]["relying_parties"], *reach, "{full}");

    let html = text(&page(proxy.admin, "/?issuer=gitlab").await).to_owned();
    assert!(html.contains("<tr><td>vault</td><td>2</td>"), "{html}");
    assert!(html.contains("<tr><td>kubernetes</td><td>1</td>"), "{html}");
    let summary = text(&page(proxy.admin, "/").await).to_owned();
    assert!(summary.contains("<tr><td>vault</td><td>2</td>"), "{summary}");
    for shown in [&html, &summary, &full.to_string()] {
        assert!(!shown.contains("evil-agent"), "{shown}");
    }
    let metrics = text(&page(proxy.admin, "/metrics").await).to_owned();
    assert!(!metrics.contains("vault"), "families are not metric labels");
}
