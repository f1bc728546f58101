//! Reaching IdPs behind their own TLS, mutual TLS, bearer tokens and a chosen Host.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};
use jwks_edge::tls::resolver::{CertResolver, CertSet};
use jwks_edge::tls::{certified_key_from_pem, provider};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const KEYS: &str = "/oauth/discovery/keys";

/// An HTTPS fake IdP shaped like GitLab, with a certificate from `ca` for 127.0.0.1, and
/// requiring client certificates from `client_ca` when given.
async fn https_idp(ca: &TestCa, client_ca: Option<&TestCa>) -> FakeIdp {
    let issued = ca.issue(&["127.0.0.1"]);
    let key = certified_key_from_pem(&issued.chain_pem, &issued.key_pem).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_cert_resolver(Arc::new(CertResolver::new(CertSet::single(key))));
    let idp = FakeIdp::serve_tls(TcpListener::bind("127.0.0.1:0").await.unwrap(), Arc::new(config)).unwrap();
    idp.put(
        "/.well-known/openid-configuration",
        Resource::json_with_idp_headers(fixture("gitlab/openid-configuration.json")),
    );
    idp.put(KEYS, Resource::json_with_idp_headers(fixture("gitlab/jwks.json")));
    idp
}

/// GitLab's public URL in front of `idp` over HTTPS.
fn over_https(idp: &FakeIdp) -> Issuer {
    Issuer::new("https://gitlab.example.com", &format!("https://{}", idp.addr()))
}

/// A proxy for `issuer` alone.
async fn proxy_for(issuer: Issuer) -> Proxy {
    Proxy::builder().issuer(issuer).start().await
}

/// The key set's (or else the discovery document's) recorded error, once there is one.
async fn jwks_error(admin: std::net::SocketAddr) -> String {
    eventually(Duration::from_secs(10), "an error recorded", async || {
        let (_, body) = readyz(admin).await;
        let issuer = &body["issuers"][0];
        let error = issuer["jwks"]["last_error"]
            .as_str()
            .or(issuer["discovery"]["last_error"].as_str());
        error.map(str::to_owned).ok_or(body)
    })
    .await
}

#[tokio::test]
async fn an_https_upstream_behind_a_private_ca_needs_upstream_ca() {
    let ca = TestCa::new("internal CA");
    let idp = https_idp(&ca, None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let untrusting = proxy_for(over_https(&idp)).await;
    let error = jwks_error(untrusting.admin).await;
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(
        get(untrusting.plain.unwrap(), &Transport::Plain, GITLAB, KEYS)
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let trusting = proxy_for(over_https(&idp).upstream_ca(&ca_file)).await;
    until_served(trusting.plain.unwrap(), GITLAB, KEYS).await;
}

#[tokio::test]
async fn an_upstream_requiring_mutual_tls_gets_the_client_certificate() {
    let ca = TestCa::new("internal CA");
    let client_ca = TestCa::new("client CA");
    let idp = https_idp(&ca, Some(&client_ca)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert, key) = client_ca
        .issue_with(&["jwks-edge"], &rcgen::PKCS_ECDSA_P256_SHA256, true)
        .write(dir.path(), "client");

    let anonymous = proxy_for(over_https(&idp).upstream_ca(&ca_file)).await;
    let error = jwks_error(anonymous.admin).await;
    assert!(error.contains("connection failed"), "{error}");

    let authenticated = proxy_for(
        over_https(&idp)
            .upstream_ca(&ca_file)
            .upstream_client_certificate(&cert, &key),
    )
    .await;
    until_served(authenticated.plain.unwrap(), GITLAB, KEYS).await;
}

#[tokio::test]
async fn the_bearer_token_is_read_again_for_every_fetch() {
    // Over TLS: a bearer token for a plain-http upstream is a config error.
    let ca = TestCa::new("internal CA");
    let idp = https_idp(&ca, None).await;
    idp.require_bearer(Some("token-one"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-one\n").unwrap();
    let proxy = Proxy::builder()
        .issuer(
            over_https(&idp)
                .upstream_ca(&ca_file)
                .upstream_bearer_token_file(&token),
        )
        .refresh("1s")
        .start()
        .await;
    until_served(proxy.plain.unwrap(), GITLAB, KEYS).await;
    assert_eq!(idp.last_request_headers()["authorization"], "Bearer token-one");

    // The IdP rotates to a token the file does not hold yet: fetches fail with 401…
    idp.require_bearer(Some("token-two"));
    let error = jwks_error(proxy.admin).await;
    assert!(error.contains("401"), "{error}");
    // …until the file is rotated too; no restart.
    std::fs::write(&token, "token-two").unwrap();
    eventually(Duration::from_secs(10), "fetches with the new token", async || {
        let (_, body) = readyz(proxy.admin).await;
        body["issuers"][0]["jwks"]["last_error"].is_null() && body["issuers"][0]["discovery"]["last_error"].is_null()
    })
    .await;
    assert_eq!(idp.last_request_headers()["authorization"], "Bearer token-two");
}

#[tokio::test]
async fn upstream_host_is_sent_as_the_host_header() {
    let idp = gitlab_idp().await;
    let proxy = proxy_for(Issuer::gitlab(&idp).upstream_host("auth.example.com")).await;
    until_served(proxy.plain.unwrap(), GITLAB, KEYS).await;
    assert_eq!(idp.last_request_headers()["host"], "auth.example.com");
}

#[tokio::test]
async fn redirects_are_upstream_errors_that_name_the_location() {
    let idp = gitlab_idp().await;
    idp.set_fault(Fault::Redirect("https://sso.example.com/login".into()));
    let proxy = Proxy::builder().issuer(Issuer::gitlab(&idp)).start().await;
    let error = jwks_error(proxy.admin).await;
    assert!(
        error.contains("302") && error.contains("https://sso.example.com/login"),
        "{error}"
    );
    assert_eq!(idp.hits("/login"), 0);
}

#[tokio::test]
async fn issuers_sharing_an_upstream_and_its_trust_keep_their_own_credentials() {
    // One client serves every issuer with the same upstream trust; the bearer token
    // stays the issuer's own, whichever issuer the shared client was made for.
    let ca = TestCa::new("internal CA");
    let idp = https_idp(&ca, None).await;
    idp.require_bearer(Some("token-one"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-one\n").unwrap();
    let upstream = format!("https://{}", idp.addr());
    let proxy = Proxy::builder()
        .issuer(Issuer::new("https://first.example.com", &upstream).upstream_ca(&ca_file))
        .issuer(
            over_https(&idp)
                .upstream_ca(&ca_file)
                .upstream_bearer_token_file(&token),
        )
        .issuer(Issuer::new("https://third.example.com", &upstream).upstream_ca(&ca_file))
        .start()
        .await;
    until_served(proxy.plain.unwrap(), GITLAB, KEYS).await;
    for tokenless in [0, 2] {
        let error = eventually(Duration::from_secs(10), "the tokenless issuer refused", async || {
            let (_, body) = readyz_detail(proxy.admin).await;
            body["issuers"][tokenless]["discovery"]["last_error"]
                .as_str()
                .map(str::to_owned)
        })
        .await;
        assert!(error.contains("401"), "issuer {tokenless}: {error}");
    }
}
