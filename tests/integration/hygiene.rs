//! Key hygiene, key policy and pre-published keys, through the real proxy and a fake IdP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use jwks_edge::app::App;
use jwks_edge::fake_idp::{FakeIdp, Resource};
use serde_json::{json, Value};

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const KEYS: &str = "/oauth/discovery/keys";
const AUTH: &str = "auth.example.com";
const SECRET: &str = "c2VjcmV0LXByaXZhdGUtZXhwb25lbnQ";

fn serve_keys(idp: &FakeIdp, set: &Value) {
    idp.put(KEYS, Resource::json_with_idp_headers(set.to_string()));
}

fn gitlab_keys() -> Value {
    serde_json::from_str(&fixture("gitlab/jwks.json")).unwrap()
}

async fn keys(addr: SocketAddr, host: &str, path: &str) -> Value {
    let reply = get(addr, &Transport::Plain, host, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Waits until the first issuer's key set refresh records an error containing `reason`,
/// and returns the whole recorded error.
async fn refused_with(admin: SocketAddr, reason: &str) -> String {
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
fn modulus(seed: u64) -> String {
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

fn rsa_keys(n: usize) -> Value {
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

/// Replaces `path` by rename, as a ConfigMap update or an editor's save does, so a reader
/// sees the old content or the new, never half a file.
fn replace_file(path: &Path, body: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, body).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn next_key(kid: &str, seed: u64) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": modulus(seed), "e": "AQAB"})
}

#[tokio::test]
async fn pre_published_keys_appear_beside_the_upstreams_and_are_reloaded_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("next-keys.json");
    replace_file(&file, &json!({"keys": [next_key("next-1", 1)]}).to_string());
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp).prepublished_jwks_file(&file))
        .refresh("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, KEYS).await;
    let upstream = kids(&gitlab_keys());
    let with = |extra: &[&str]| [upstream.clone(), extra.iter().map(|s| s.to_string()).collect()].concat();
    assert_eq!(kids(&keys(addr, GITLAB, KEYS).await), with(&["next-1"]));

    // A new file: its keys replace the old ones; a kid the upstream has stays the upstream's key.
    let shadow = next_key(&upstream[0], 99);
    replace_file(&file, &json!({"keys": [next_key("next-2", 2), shadow]}).to_string());
    eventually(Duration::from_secs(10), "the new pre-published key", async || {
        kids(&keys(addr, GITLAB, KEYS).await) == with(&["next-2"])
    })
    .await;
    assert_eq!(keys(addr, GITLAB, KEYS).await["keys"][0], gitlab_keys()["keys"][0]);

    // A bad file is refused and the previous keys stay. The upstream changes after the
    // file does, so seeing the upstream's change proves a refresh read the bad file.
    let mut leaked = next_key("next-3", 3);
    leaked["d"] = json!(SECRET);
    replace_file(&file, &json!({"keys": [leaked]}).to_string());
    let mut rotated = gitlab_keys();
    rotated["keys"].as_array_mut().unwrap().push(next_key("rotated", 4));
    serve_keys(&idp, &rotated);
    eventually(Duration::from_secs(10), "the upstream's rotation", async || {
        kids(&keys(addr, GITLAB, KEYS).await).contains(&"rotated".to_owned())
    })
    .await;
    let published = keys(addr, GITLAB, KEYS).await;
    assert_eq!(kids(&published), [kids(&rotated), vec!["next-2".to_owned()]].concat());
    assert!(!published.to_string().contains(SECRET));
    let (_, ready) = readyz(proxy.admin).await;
    assert!(
        ready["issuers"][0]["jwks"]["last_error"].is_null(),
        "the upstream's set is fine: {ready}"
    );

    // Fixed: published again.
    replace_file(&file, &json!({"keys": [next_key("next-3", 3)]}).to_string());
    eventually(Duration::from_secs(10), "the fixed file", async || {
        kids(&keys(addr, GITLAB, KEYS).await).contains(&"next-3".to_owned())
    })
    .await;
}

fn config_with_prepublished(file: &Path) -> String {
    format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[issuer]]\npublic_url = \"https://gitlab.example.com\"\nupstream = \"http://127.0.0.1:9\"\n\
         prepublished_jwks_file = {file:?}\n"
    )
}

#[tokio::test]
async fn a_bad_pre_published_file_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("next-keys.json");
    let mut leaked = next_key("next-1", 1);
    leaked["p"] = json!(SECRET);
    replace_file(&file, &json!({"keys": [leaked]}).to_string());
    let text = config_with_prepublished(&file);
    let expected = format!(
        "cannot use issuer[0].prepublished_jwks_file (issuer \"gitlab.example.com\"): pre-published key file \
         {file:?}: keys[0] (kid \"next-1\") holds the private member `p`: a key set with private key material is \
         never published"
    );

    let config = jwks_edge::config::Config::from_toml(&text, Path::new(".")).unwrap();
    let err = App::new(config).err().expect("the start is refused");
    assert_eq!(jwks_edge::error_chain(&err), expected);

    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).unwrap();
    let bin = env!("CARGO_BIN_EXE_jwks-edge");
    let check = std::process::Command::new(bin)
        .args(["check-config", "--config", config_path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "issuer[0].prepublished_jwks_file: pre-published key file {file:?}: keys[0] (kid \"next-1\") holds the \
             private member `p`"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");

    // `serve` refuses to start: exit 2, the same message, no secret.
    let mut serve = ChildProcess::spawn(
        std::process::Command::new(bin)
            .args(["serve", "--config", config_path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let status = serve
        .exit_within(
            Duration::from_secs(20),
            "serve to refuse to start with a bad pre-published key file",
        )
        .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");

    // A missing file is as clear.
    std::fs::remove_file(&file).unwrap();
    let config = jwks_edge::config::Config::from_toml(&text, Path::new(".")).unwrap();
    let err = jwks_edge::error_chain(&App::new(config).err().unwrap());
    assert!(
        err.contains(&format!("pre-published key file {file:?}: cannot be read: ")),
        "{err}"
    );
}

#[tokio::test]
async fn a_snapshot_read_back_at_start_goes_through_the_current_rules() {
    let state = tempfile::tempdir().unwrap();
    let idp = keycloak_idp("prod").await;
    let certs = "/realms/prod/protocol/openid-connect/certs";
    let first = Proxy::builder()
        .issuer(Issuer::keycloak(&idp, "prod"))
        .state_dir(state.path())
        .start()
        .await;
    until_served(first.plain.unwrap(), AUTH, certs).await;
    eventually(Duration::from_secs(5), "two snapshots", async || {
        let entries = std::fs::read_dir(state.path()).unwrap();
        entries
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
            == 2
    })
    .await;
    first.shutdown().await;

    // Restarted with the signing-only policy while the IdP is down: the snapshot, which
    // holds both keys, is served without the encryption key from the first request on.
    idp.set_fault(jwks_edge::fake_idp::Fault::Refuse);
    let second = Proxy::builder()
        .issuer(Issuer::keycloak(&idp, "prod").publish_keys("signing"))
        .state_dir(state.path())
        .start()
        .await;
    let published = keys(second.plain.unwrap(), AUTH, certs).await;
    let upstream: Value = serde_json::from_str(&fixture("keycloak/jwks.json")).unwrap();
    assert_eq!(published, json!({"keys": [upstream["keys"][0].clone()]}));
}
