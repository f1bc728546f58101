//! `[[publish]]` against real object stores on loopback: the same core cases on SeaweedFS
//! (S3, `s3`) and Azurite (Azure Blob, `azure`), and what needs no store (`cli`: exit
//! codes, an unreachable sink). GCS has no emulator object_store can write to (see
//! `support/stores.rs`): `gcs` checks the requests against a fake of its XML API, and the
//! library's unit tests cover its object layout.

mod azure;
mod cli;
mod gcs;
mod s3;

use std::process::Command;
use std::time::Duration;

use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};

use crate::support::*;

/// Both issuers' object keys under `prefix`, key set before discovery document.
pub const GITLAB_KEYS: &str = "oauth/discovery/keys";
pub const GITLAB_DISCOVERY: &str = ".well-known/openid-configuration";
pub const REALM_KEYS: &str = "realms/prod/protocol/openid-connect/certs";
pub const REALM_DISCOVERY: &str = "realms/prod/.well-known/openid-configuration";

/// Two issuers of two shapes: GitLab (`jwks_uri` already public) and a Keycloak realm
/// (`jwks_uri` on the backend, rewritten to the public URL).
struct Idps {
    gitlab: FakeIdp,
    keycloak: FakeIdp,
}

impl Idps {
    async fn start() -> Idps {
        Idps {
            gitlab: gitlab_idp().await,
            keycloak: keycloak_idp("prod").await,
        }
    }

    fn issuers(&self) -> String {
        format!(
            "{}{}",
            Issuer::gitlab(&self.gitlab).name("gitlab"),
            Issuer::keycloak(&self.keycloak, "prod").name("prod")
        )
    }

    /// GitLab's IdP starts serving another key set (a rotation).
    fn rotate_gitlab(&self) {
        self.gitlab.put(
            "/oauth/discovery/keys",
            Resource::json_with_idp_headers(fixture("kubernetes/jwks.json")),
        );
    }
}

/// The `[[publish]]` table for `bucket` under `prefix`.
fn sink(bucket: &impl Bucket, prefix: &str) -> String {
    format!(
        "[[publish]]\nurl = {:?}\nendpoint = {:?}\n",
        bucket.url(prefix),
        bucket.endpoint()
    )
}

/// What `publish --once` did.
struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs `jwks-edge publish --config <config> --once` with `env` (bounded). The clouds'
/// variables of this process are not passed on: a stray account name or profile would
/// send the child to a credential service that is not on loopback.
async fn publish_once(config: &str, env: &[(String, String)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_jwks-edge"));
    command.args(["publish", "--once", "--config", path.to_str().unwrap()]);
    for (name, _) in std::env::vars_os() {
        let cloud = name.to_str().is_some_and(|n| {
            ["AWS_", "AZURE_", "GOOGLE_", "AZURITE_"]
                .iter()
                .any(|p| n.starts_with(p))
        });
        if cloud {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let output = tokio::task::spawn_blocking(move || try_tool_blocking(&mut command, "publish --once"))
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The core cases on one store: what is written and how, key sets first, nothing when
/// nothing changed, the key set alone after a rotation, nothing on an invalid upstream
/// answer, and a deleted object restored.
async fn core_cases(bucket: &impl Bucket) {
    let idps = Idps::start().await;
    let config = format!("{}{}", idps.issuers(), sink(bucket, "oidc"));
    let key = |k: &str| format!("oidc/{k}");
    let env = bucket.env();

    let run = publish_once(&config, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let first = written_since_events(bucket, 0).await;
    let position = |k: &str| {
        first
            .iter()
            .position(|w| *w == key(k))
            .unwrap_or_else(|| panic!("{k} in {first:?}"))
    };
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(
        position(GITLAB_KEYS) < position(GITLAB_DISCOVERY),
        "key set first: {first:?}"
    );
    assert!(
        position(REALM_KEYS) < position(REALM_DISCOVERY),
        "key set first: {first:?}"
    );

    // Exactly what the proxy serves, bytes and headers.
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idps.gitlab).name("gitlab"))
        .issuer(Issuer::keycloak(&idps.keycloak, "prod").name("prod"))
        .start()
        .await;
    let served = [
        (
            "gitlab.example.com",
            "/.well-known/openid-configuration",
            GITLAB_DISCOVERY,
        ),
        ("gitlab.example.com", "/oauth/discovery/keys", GITLAB_KEYS),
        (
            "auth.example.com",
            "/realms/prod/.well-known/openid-configuration",
            REALM_DISCOVERY,
        ),
        (
            "auth.example.com",
            "/realms/prod/protocol/openid-connect/certs",
            REALM_KEYS,
        ),
    ];
    for (host, path, object) in served {
        until_served(proxy.plain.unwrap(), host, path).await;
        let reply = get(proxy.plain.unwrap(), &Transport::Plain, host, path).await;
        let held = bucket.object(&key(object)).await.expect("written");
        assert_eq!(held.bytes, reply.body.to_vec(), "{object}");
        assert_eq!(held.content_type.as_deref(), Some("application/json"), "{object}");
        assert_eq!(held.content_type.as_deref(), reply.header("content-type"), "{object}");
        assert_eq!(held.cache_control.as_deref(), reply.header("cache-control"), "{object}");
        assert!(
            held.cache_control.as_deref().unwrap().starts_with("public, max-age="),
            "{held:?}"
        );
        assert_eq!(held.metadata["sha256"].len(), 64, "{held:?}");
    }
    let realm: serde_json::Value =
        serde_json::from_slice(&bucket.object(&key(REALM_DISCOVERY)).await.unwrap().bytes).unwrap();
    assert_eq!(
        realm["jwks_uri"], "https://auth.example.com/realms/prod/protocol/openid-connect/certs",
        "the public URL, not the backend's"
    );
    proxy.shutdown().await;

    // Nothing changed: nothing written.
    let before = bucket.events().await.len();
    let run = publish_once(&config, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(written_since_events(bucket, before).await, Vec::<String>::new());

    // A rotation: GitLab's key set, and nothing else.
    idps.rotate_gitlab();
    let before = bucket.events().await.len();
    let run = publish_once(&config, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(written_since_events(bucket, before).await, [key(GITLAB_KEYS)]);
    let keys = bucket.object(&key(GITLAB_KEYS)).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&keys.bytes).unwrap(),
        serde_json::from_str::<serde_json::Value>(&fixture("kubernetes/jwks.json")).unwrap()
    );

    // An invalid upstream answer: nothing written, exit 1 naming the sink and the reason.
    idps.gitlab.set_fault(Fault::Html);
    let before = bucket.events().await.len();
    let run = publish_once(&config, &env).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&bucket.url("oidc")) && run.stderr.contains("\"gitlab\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing written"), "{}", run.stderr);
    assert_eq!(written_since_events(bucket, before).await, Vec::<String>::new());
    assert_eq!(
        bucket.object(&key(GITLAB_KEYS)).await.unwrap().bytes,
        keys.bytes,
        "left as it was"
    );
    idps.gitlab.set_fault(Fault::None);

    // A discovery document deleted by hand comes back, and only it is written.
    bucket.delete(&key(REALM_DISCOVERY)).await;
    let before = bucket.events().await.len();
    let run = publish_once(&config, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(written_since_events(bucket, before).await, [key(REALM_DISCOVERY)]);
}

/// The keys written after the first `before` events (writes and deletes).
async fn written_since_events(bucket: &impl Bucket, before: usize) -> Vec<String> {
    written(&bucket.events().await[before..])
}

/// Bounded wait for the object at `key` to satisfy `check`.
async fn object_until(
    bucket: &impl Bucket,
    key: &str,
    what: &str,
    check: impl Fn(&StoredObject) -> bool,
) -> StoredObject {
    Wait::up_to(Duration::from_secs(30))
        .every(Duration::from_millis(250))
        .until(what, async || bucket.object(key).await.filter(|o| check(o)))
        .await
}
