//! Key hygiene and key policy, through the real proxy and a fake IdP (pre-published keys:
//! `prepublished.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::fake_idp::{FakeIdp, Resource};
use serde_json::{json, Value};

use crate::support::*;

pub(crate) const GITLAB: &str = "gitlab.example.com";
pub(crate) const KEYS: &str = "/oauth/discovery/keys";
pub(crate) const AUTH: &str = "auth.example.com";
pub(crate) const SECRET: &str = "c2VjcmV0LXByaXZhdGUtZXhwb25lbnQ";

pub(crate) fn serve_keys(idp: &FakeIdp, set: &Value) {
    idp.put(KEYS, Resource::json_with_idp_headers(set.to_string()));
}

pub(crate) fn gitlab_keys() -> Value {
    serde_json::from_str(&fixture("gitlab/jwks.json")).unwrap()
}

pub(crate) async fn keys(addr: SocketAddr, host: &str, path: &str) -> Value {
    let reply = get(addr, &Transport::Plain, host, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()
}

pub(crate) fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Waits until the first issuer's key set refresh records an error containing `reason`,
/// and returns the whole recorded error.
pub(crate) async fn refused_with(admin: SocketAddr, reason: &str) -> String {
    eventually(Duration::from_secs(10), reason, async || {
        let (_, body) = readyz(admin).await;
        let error = body["issuers"][0]["jwks"]["last_error"].as_str().unwrap_or_default();
        if error.contains(reason) {
            Ok(error.to_owned())
        } else {
            Err(format!("last error {error:?}"))
        }
    })
    .await
}

/// A base64url string that looks like a 2048-bit modulus; no real key is needed for the
/// shape rules, and a cheap generator keeps them all different.
pub(crate) fn modulus(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..342)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize] as char
        })
        .collect()
}

pub(crate) fn rsa_keys(n: usize) -> Value {
    let keys: Vec<Value> = (0..n)
        .map(|i| json!({"kty": "RSA", "kid": format!("rsa-{i}"), "use": "sig", "alg": "RS256", "n": modulus(i as u64), "e": "AQAB"}))
        .collect();
    json!({ "keys": keys })
}

#[tokio::test]
async fn a_set_with_a_private_member_is_refused_and_the_last_good_copy_is_served() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let good = get(addr, &Transport::Plain, GITLAB, KEYS).await.body;

    // The IdP's set with a private exponent added: the mistake that hands out a signing key.
    let mut leaked = gitlab_keys();
    let kid = leaked["keys"][1]["kid"].as_str().unwrap().to_owned();
    leaked["keys"][1]["d"] = json!(SECRET);
    serve_keys(&idp, &leaked);
    let error = refused_with(proxy.admin, "private member").await;
    assert_eq!(
        error,
        format!(
            "invalid document: keys[1] (kid {kid:?}) holds the private member `d`: a key set with private key \
             material is never published"
        )
    );
    assert!(!error.contains(SECRET));
    let reply = get(addr, &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, good, "the last good copy is served");
    assert!(!String::from_utf8_lossy(&reply.body).contains(SECRET));

    // Without a good copy, the set is never published at all.
    let cold = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .deadline("300ms")
        .refresh("1s")
        .start()
        .await;
    refused_with(cold.admin, "holds the private member `d`").await;
    let reply = get(cold.plain.unwrap(), &Transport::Plain, GITLAB, KEYS).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!String::from_utf8_lossy(&reply.body).contains(SECRET));
}

#[tokio::test]
async fn an_oct_only_set_is_refused() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let good = get(addr, &Transport::Plain, GITLAB, KEYS).await.body;

    serve_keys(
        &idp,
        &json!({"keys": [{"kty": "oct", "kid": "hmac", "alg": "HS256", "use": "sig"}]}),
    );
    let error = refused_with(proxy.admin, "no public signing key").await;
    assert_eq!(
        error,
        "invalid document: no public signing key a relying party can use (RSA with `n` and `e`, EC with `crv`, \
         `x` and `y`, or OKP Ed25519/Ed448 with `x`; not `use: enc`)"
    );
    assert_eq!(get(addr, &Transport::Plain, GITLAB, KEYS).await.body, good);
}

#[tokio::test]
async fn a_set_over_the_key_cap_is_refused_and_the_cap_is_configurable() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let good = get(addr, &Transport::Plain, GITLAB, KEYS).await.body;

    serve_keys(&idp, &rsa_keys(150));
    let error = refused_with(proxy.admin, "RSA keys to publish").await;
    assert!(
        error.starts_with("invalid document: 150 RSA keys to publish, over cache.max_rsa_keys = 100"),
        "{error}"
    );
    assert_eq!(get(addr, &Transport::Plain, GITLAB, KEYS).await.body, good);

    // Exactly at the cap is fine.
    serve_keys(&idp, &rsa_keys(100));
    eventually(Duration::from_secs(10), "100 RSA keys published", async || {
        kids(&keys(addr, GITLAB, KEYS).await).len() == 100
    })
    .await;

    // A relying party that takes more: the operator raises the cap.
    serve_keys(&idp, &rsa_keys(150));
    let raised = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .max_rsa_keys(200)
        .start()
        .await;
    until_served(raised.plain.unwrap(), GITLAB, KEYS).await;
    assert_eq!(kids(&keys(raised.plain.unwrap(), GITLAB, KEYS).await).len(), 150);
}

#[tokio::test]
async fn the_signing_only_policy_drops_keycloaks_encryption_key() {
    let prod = keycloak_idp("prod").await;
    let dev = keycloak_idp("dev").await;
    let proxy = Proxy::builder()
        .issuer(Issuer::keycloak(&prod, "prod").publish_keys("signing"))
        .issuer(Issuer::keycloak(&dev, "dev"))
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    let certs = |realm: &str| format!("/realms/{realm}/protocol/openid-connect/certs");
    until_served(addr, AUTH, &certs("prod")).await;
    until_served(addr, AUTH, &certs("dev")).await;

    let upstream: Value = serde_json::from_str(&fixture("keycloak/jwks.json")).unwrap();
    assert_eq!(
        upstream["keys"][1]["use"], "enc",
        "the fixture has Keycloak's RSA-OAEP key"
    );
    let signing_only = keys(addr, AUTH, &certs("prod")).await;
    assert_eq!(
        signing_only,
        json!({"keys": [upstream["keys"][0].clone()]}),
        "the signing key is kept exactly"
    );
    // The default publishes the upstream's bytes as they are.
    let all = get(addr, &Transport::Plain, AUTH, &certs("dev")).await;
    assert_eq!(all.body, fixture("keycloak/jwks.json").as_bytes());
}

#[tokio::test]
async fn missing_use_and_alg_are_filled_and_existing_ones_kept() {
    let idp = gitlab_idp().await;
    // The IdP says it signs ID tokens with PS256, not RS256: bare RSA keys get PS256.
    let mut discovery: Value = serde_json::from_str(&fixture("gitlab/openid-configuration.json")).unwrap();
    discovery["id_token_signing_alg_values_supported"] = json!(["PS256", "ES384", "EdDSA"]);
    idp.put(
        "/.well-known/openid-configuration",
        Resource::json_with_idp_headers(discovery.to_string()),
    );
    let upstream = json!({"keys": [
        {"kid": "rsa-bare", "kty": "RSA", "n": modulus(1), "e": "AQAB", "x-vendor": {"rotated": false}},
        {"kid": "ec-bare", "kty": "EC", "crv": "P-384", "x": "AAAA", "y": "BBBB"},
        {"kid": "ed-bare", "kty": "OKP", "crv": "Ed25519", "x": "CCCC"},
        {"kid": "kept", "kty": "RSA", "use": "sig", "alg": "RS512", "n": modulus(2), "e": "AQAB"},
        {"kid": "enc", "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": modulus(3), "e": "AQAB"},
    ], "x-set-member": 1});
    serve_keys(&idp, &upstream);
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp).fill_key_use().fill_key_alg())
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let published = keys(addr, GITLAB, KEYS).await;

    assert_eq!(kids(&published), ["rsa-bare", "ec-bare", "ed-bare", "kept", "enc"]);
    assert_eq!(published["x-set-member"], 1);
    let key = |i: usize| published["keys"][i].clone();
    let members: Vec<&String> = published["keys"][0].as_object().unwrap().keys().collect();
    assert_eq!(members, ["kid", "kty", "n", "e", "x-vendor", "use", "alg"]);
    assert_eq!(
        (key(0)["use"].clone(), key(0)["alg"].clone()),
        (json!("sig"), json!("PS256"))
    );
    assert_eq!(key(0)["x-vendor"], json!({"rotated": false}));
    assert_eq!(
        (key(1)["use"].clone(), key(1)["alg"].clone()),
        (json!("sig"), json!("ES384"))
    );
    assert_eq!(
        (key(2)["use"].clone(), key(2)["alg"].clone()),
        (json!("sig"), json!("EdDSA"))
    );
    assert_eq!(key(3), upstream["keys"][3], "existing use and alg are kept");
    assert_eq!(key(4), upstream["keys"][4], "an encryption key gets no signing use");
}
