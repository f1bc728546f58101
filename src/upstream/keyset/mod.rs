//! `KeySetRules`: the step from a fetched key set to the one handed to retention — hygiene, the issuer's key policy, its pre-published keys.

pub mod hygiene;
pub mod policy;
pub mod prepublished;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::keys::{KeyCap, KeyPolicy};
use crate::config::Issuer;
use crate::error_chain;
use crate::upstream::checks::{check_jwks, ValidationError};
use crate::upstream::keyset::hygiene::{refuse_private, require_signing_key};
use crate::upstream::keyset::policy::id_token_algs;
use crate::upstream::keyset::prepublished::{PrepublishedError, PrepublishedKeys, Reload};

/// A key set ready for retention, and how the pre-published keys met the upstream's.
#[derive(Debug)]
pub struct Assembled {
    /// The upstream's bytes themselves when nothing was changed.
    pub body: Bytes,
    /// Pre-published `kid`s the upstream publishes too, with the same key: the rotation
    /// happened, and the file's copy is no longer needed.
    pub upstream_has: Vec<String>,
    /// Pre-published `kid`s the upstream publishes with a different key. The upstream's
    /// is published: it is the key the IdP signs with now, whereas the file only
    /// announces a future one, and two keys under one `kid` would leave relying parties
    /// to pick either.
    pub conflicts: Vec<String>,
}

/// The members that make a public key what it is; `use`, `alg`, `x5c` and the rest may
/// differ between two copies of the same key.
const MATERIAL: [&str; 6] = ["kty", "n", "e", "crv", "x", "y"];

fn same_key(a: &Value, b: &Value) -> bool {
    MATERIAL.iter().all(|m| a.get(*m) == b.get(*m))
}

/// Builds the set to publish from a fetched upstream set: refused when it fails a
/// structural or hygiene rule (`ValidationError`), else with the policy applied and the
/// pre-published keys added after the upstream's, unless the upstream has their `kid`.
/// The cap applies to the result. Nothing changed means the upstream's bytes, as they are.
pub fn assemble(
    upstream: Bytes,
    policy: &KeyPolicy,
    cap: &KeyCap,
    id_token_algs: &[String],
    prepublished: &[Value],
) -> Result<Assembled, ValidationError> {
    check_jwks(&upstream)?;
    let mut set: serde_json::Map<String, Value> =
        serde_json::from_slice(&upstream).map_err(|e| ValidationError::NotJson(e.to_string()))?;
    let Some(Value::Array(keys)) = set.get_mut("keys") else {
        return Err(ValidationError::KeysNotArray);
    };
    refuse_private(keys)?;
    require_signing_key(keys)?;
    let mut changed = policy.apply(keys, id_token_algs);
    let (mut upstream_has, mut conflicts, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for key in prepublished {
        let kid = key.get("kid").and_then(Value::as_str).unwrap_or_default();
        match keys.iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)) {
            Some(theirs) if same_key(theirs, key) => upstream_has.push(kid.to_owned()),
            Some(_) => conflicts.push(kid.to_owned()),
            None => added.push(key.clone()),
        }
    }
    policy.apply(&mut added, id_token_algs);
    let pre_published = added.len();
    changed |= pre_published > 0;
    keys.append(&mut added);
    cap.check(keys, pre_published)?;
    let body = if changed {
        Bytes::from(serde_json::to_vec(&set).expect("a JSON value always serialises"))
    } else {
        upstream
    };
    Ok(Assembled {
        body,
        upstream_has,
        conflicts,
    })
}

/// One issuer's key set step, shared by its key set refresher and the snapshot restore.
pub struct KeySetRules {
    issuer: String,
    policy: KeyPolicy,
    cap: KeyCap,
    prepublished: Option<PrepublishedKeys>,
    /// `Assembled::upstream_has` and `conflicts` as last logged, so each change is logged
    /// once. Written and read by the key set refresher (and the restore before it).
    overlap: Mutex<(Vec<String>, Vec<String>)>,
}

impl KeySetRules {
    /// The issuer's rules; reads its pre-published key file, whose problems stop the start.
    pub fn new(issuer: &Issuer, cap: KeyCap, max_bytes: usize) -> Result<KeySetRules, PrepublishedError> {
        let prepublished = issuer
            .prepublished_jwks_file
            .as_deref()
            .map(|path| PrepublishedKeys::load(path, max_bytes, cap))
            .transpose()?;
        if let Some(file) = &prepublished {
            info!(issuer = %issuer.name, file = %file.path().display(), keys = file.keys().len(), "pre-published keys loaded");
        }
        Ok(KeySetRules {
            issuer: issuer.name.clone(),
            policy: issuer.key_policy,
            cap,
            prepublished,
            overlap: Mutex::default(),
        })
    }

    /// The most keys a published set may hold, for retention.
    pub fn cap(&self) -> KeyCap {
        self.cap
    }

    /// `build`, after re-reading the pre-published key file: a changed good file is
    /// published from this set on; a bad one is logged and its previous keys stay.
    pub async fn prepare(&self, upstream: Bytes, discovery: Option<&[u8]>) -> Result<Bytes, ValidationError> {
        if let Some(file) = &self.prepublished {
            match file.reload().await {
                Reload::Unchanged => {}
                Reload::Reloaded(keys) => {
                    info!(issuer = %self.issuer, file = %file.path().display(), keys, "pre-published keys reloaded");
                }
                Reload::Refused(err) => warn!(
                    issuer = %self.issuer,
                    file = %file.path().display(),
                    "pre-published key file refused, its previous keys stay published: {}",
                    error_chain(&err)
                ),
            }
        }
        self.build(upstream, discovery)
    }

    /// The set to publish for `upstream` (already fetched, or read back from a snapshot),
    /// with `discovery` the issuer's current discovery document, if any.
    pub fn build(&self, upstream: Bytes, discovery: Option<&[u8]>) -> Result<Bytes, ValidationError> {
        let algs = match discovery {
            Some(discovery) if self.policy.needs_id_token_algs() => id_token_algs(discovery),
            _ => Vec::new(),
        };
        let prepublished: Arc<Vec<Value>> = self.prepublished.as_ref().map(|p| p.keys()).unwrap_or_default();
        let assembled = assemble(upstream, &self.policy, &self.cap, &algs, &prepublished)?;
        self.note_overlap(&assembled);
        Ok(assembled.body)
    }

    fn note_overlap(&self, assembled: &Assembled) {
        let mut last = self.overlap.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 != assembled.upstream_has && !assembled.upstream_has.is_empty() {
            info!(
                issuer = %self.issuer,
                kids = ?assembled.upstream_has,
                "the upstream now publishes these pre-published keys; they can be removed from the file"
            );
        }
        if last.1 != assembled.conflicts && !assembled.conflicts.is_empty() {
            warn!(
                issuer = %self.issuer,
                kids = ?assembled.conflicts,
                "the upstream publishes other keys under these pre-published kids; the upstream's are published"
            );
        }
        *last = (assembled.upstream_has.clone(), assembled.conflicts.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::PublishKeys;
    use crate::upstream::keyset::hygiene::KeyError;
    use serde_json::json;

    const KEYCLOAK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keycloak/jwks.json"
    ));

    fn run(upstream: &[u8], policy: KeyPolicy, prepublished: &[Value]) -> Result<Assembled, ValidationError> {
        assemble(
            Bytes::copy_from_slice(upstream),
            &policy,
            &KeyCap::default(),
            &[],
            prepublished,
        )
    }

    fn kids(body: &[u8]) -> Vec<String> {
        let set: Value = serde_json::from_slice(body).unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap_or("-").to_owned())
            .collect()
    }

    #[test]
    fn by_default_the_upstream_bytes_are_published_as_they_are() {
        let spaced = b"{ \"keys\" : [ {\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"} ], \"z\": 1 }";
        let out = run(spaced, KeyPolicy::default(), &[]).unwrap();
        assert_eq!(&out.body[..], spaced);
        assert_eq!(&run(KEYCLOAK, KeyPolicy::default(), &[]).unwrap().body[..], KEYCLOAK);
    }

    #[test]
    fn structural_and_hygiene_failures_are_refused_with_their_reason() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"keys":[]}"#, "field `keys` is empty"),
            (
                br#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB","p":"x"}]}"#,
                r#"keys[0] (kid "a") holds the private member `p`"#,
            ),
            (br#"{"keys":[{"kty":"oct","kid":"h"}]}"#, "no public signing key"),
            (
                br#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
                "no public signing key",
            ),
        ];
        for (body, reason) in cases {
            let err = run(body, KeyPolicy::default(), &[]).unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
        let err = run(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#, KeyPolicy::default(), &[]).unwrap_err();
        assert_eq!(err.as_str(), "private_key");
    }

    #[test]
    fn an_upstream_set_over_the_cap_is_refused() {
        let keys: Vec<Value> = (0..150)
            .map(|i| json!({"kty": "RSA", "kid": format!("k{i}"), "n": format!("n{i:0>40}"), "e": "AQAB"}))
            .collect();
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        let err = run(&body, KeyPolicy::default(), &[]).unwrap_err();
        assert!(
            matches!(
                err,
                ValidationError::Keys(KeyError::TooMany {
                    count: 150,
                    limit: 100,
                    ..
                })
            ),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with("150 RSA keys to publish, over cache.max_rsa_keys = 100"));
    }

    #[test]
    fn the_policy_applies_to_a_keycloak_set_keeping_order_and_members() {
        let policy = KeyPolicy {
            publish: PublishKeys::Signing,
            fill_use: true,
            fill_alg: true,
        };
        let out = run(KEYCLOAK, policy, &[]).unwrap();
        let original: Value = serde_json::from_slice(KEYCLOAK).unwrap();
        let published: Value = serde_json::from_slice(&out.body).unwrap();
        // The signing key already had `use` and `alg`: kept exactly, the enc key gone.
        assert_eq!(published["keys"], json!([original["keys"][0]]));
    }

    #[test]
    fn pre_published_keys_follow_the_upstreams_and_the_upstream_wins_a_shared_kid() {
        let upstream = br#"{"keys":[{"kty":"EC","kid":"now","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let next = json!({"kty": "EC", "kid": "next", "crv": "P-256", "x": "AB", "y": "AB"});
        let same = json!({"kty": "EC", "kid": "now", "crv": "P-256", "x": "AA", "y": "AA", "use": "sig"});
        let other = json!({"kty": "EC", "kid": "now", "crv": "P-256", "x": "ZZ", "y": "ZZ"});
        let out = run(upstream, KeyPolicy::default(), std::slice::from_ref(&next)).unwrap();
        assert_eq!(kids(&out.body), ["now", "next"]);
        let out = run(upstream, KeyPolicy::default(), &[same, next.clone()]).unwrap();
        assert_eq!(kids(&out.body), ["now", "next"]);
        assert_eq!(out.upstream_has, ["now"]);
        let out = run(upstream, KeyPolicy::default(), &[other]).unwrap();
        assert_eq!(&out.body[..], upstream, "the upstream's key is published as it is");
        assert_eq!(out.conflicts, ["now"]);
        // The policy fills pre-published keys too.
        let fill = KeyPolicy {
            fill_alg: true,
            ..KeyPolicy::default()
        };
        let out = run(upstream, fill, &[next]).unwrap();
        let published: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(published["keys"][0]["alg"], "ES256");
        assert_eq!(published["keys"][1]["alg"], "ES256");
    }

    #[test]
    fn pre_published_keys_count_towards_the_cap() {
        let upstream = br#"{"keys":[{"kty":"EC","kid":"now","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let cap = KeyCap {
            ec: 1,
            ..KeyCap::default()
        };
        let next = json!({"kty": "EC", "kid": "next", "crv": "P-256", "x": "AB", "y": "AB"});
        let err = assemble(Bytes::from_static(upstream), &KeyPolicy::default(), &cap, &[], &[next]).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 EC keys to publish (1 of them pre-published)"),
            "{err}"
        );
    }
}
