//! Pre-published keys (`prepublished_jwks_file`), through the real proxy and a fake IdP.

use std::path::Path;
use std::time::Duration;

use jwks_edge::app::App;
use serde_json::{json, Value};

use crate::hygiene::*;
use crate::support::*;

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
