//! Fake IdPs on loopback shaped like the self-hosted ones: GitLab, Keycloak, Kubernetes.

use jwks_edge::fake_idp::{FakeIdp, Resource};
use tokio::net::TcpListener;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).expect("fixture exists")
}

/// Starts a fake IdP on an ephemeral loopback port.
pub async fn fake_idp() -> FakeIdp {
    FakeIdp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

/// A fake IdP serving each `(path, body)` with the headers self-hosted IdPs send.
async fn idp_serving(documents: &[(&str, String)]) -> FakeIdp {
    let idp = fake_idp().await;
    for (path, body) in documents {
        idp.put(path, Resource::json_with_idp_headers(body.clone()));
    }
    idp
}

/// A fake IdP shaped like GitLab whose `external_url` is public: `jwks_uri` is already
/// the public URL, and the IdP sends no-cache headers and a session cookie.
pub async fn gitlab_idp() -> FakeIdp {
    idp_serving(&[
        (
            "/.well-known/openid-configuration",
            fixture("gitlab/openid-configuration.json"),
        ),
        ("/oauth/discovery/keys", fixture("gitlab/jwks.json")),
    ])
    .await
}

/// A fake IdP shaped like a Keycloak realm: `issuer` on the public frontend URL, every
/// endpoint (the key set included) on the IdP's own backend address.
pub async fn keycloak_idp(realm: &str) -> FakeIdp {
    let idp = fake_idp().await;
    let backend = format!("{}/realms/{realm}", idp.base_url());
    let discovery = fixture("keycloak/openid-configuration.json")
        .replace("http://keycloak.internal:8080/realms/prod", &backend)
        .replace(
            "https://auth.example.com/realms/prod",
            &format!("https://auth.example.com/realms/{realm}"),
        );
    idp.put(
        &format!("/realms/{realm}/.well-known/openid-configuration"),
        Resource::json_with_idp_headers(discovery),
    );
    idp.put(
        &format!("/realms/{realm}/protocol/openid-connect/certs"),
        Resource::json_with_idp_headers(fixture("keycloak/jwks.json")),
    );
    idp
}

/// A fake IdP shaped like a Kubernetes API server: `jwks_uri` on the in-cluster address.
pub async fn kubernetes_idp() -> FakeIdp {
    idp_serving(&[
        (
            "/.well-known/openid-configuration",
            fixture("kubernetes/openid-configuration.json"),
        ),
        ("/openid/v1/jwks", fixture("kubernetes/jwks.json")),
    ])
    .await
}
