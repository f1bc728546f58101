//! The rules every published key set obeys: no private key material, a public signing key a relying party can use, and at most `KeyCap` keys.

use serde_json::Value;

use crate::config::keys::KeyCap;

/// JWK members that only a private or symmetric key carries (RFC 7518 §6.2.2, §6.3.2,
/// §6.4.1; RFC 8037 §2 for OKP's `d`). Their presence, whatever the value, refuses the set:
/// a key set that holds one is a misconfigured IdP, and publishing it would hand the
/// signing key to anyone.
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Longest `kid` quoted in a reason; longer ones are cut, so an upstream cannot make a
/// log line or `/readyz` arbitrarily long.
const KID_SHOWN: usize = 64;

/// Why a key set may not be published. Reasons name keys by index and `kid`, never by
/// key material, so they are safe to log and to show in `/readyz`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{key} holds the private member `{member}`: a key set with private key material is never published")]
    PrivateMember { key: String, member: &'static str },
    #[error(
        "no public signing key a relying party can use (RSA with `n` and `e`, EC with `crv`, `x` and `y`, \
         or OKP Ed25519/Ed448 with `x`; not `use: enc`)"
    )]
    NoSigningKey,
    #[error(
        "{count} {what} to publish{}, over cache.{setting} = {limit}: relying parties refuse larger sets \
         (AWS STS takes at most 100 RSA and 100 EC keys)",
        pre_published_note(*pre_published)
    )]
    TooMany {
        /// "RSA keys", "EC keys", or "keys" for the total.
        what: &'static str,
        setting: &'static str,
        count: usize,
        limit: usize,
        /// How many of the keys come from the issuer's pre-published key file.
        pre_published: usize,
    },
}

fn pre_published_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} of them pre-published)")
    }
}

impl KeyError {
    /// A short stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyError::PrivateMember { .. } => "private_key",
            KeyError::NoSigningKey => "no_signing_key",
            KeyError::TooMany { .. } => "too_many_keys",
        }
    }
}

/// `keys[3] (kid "abc")`, or `keys[3] (no kid)`: how reasons name a key.
pub fn describe(index: usize, key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) if kid.chars().count() > KID_SHOWN => {
            let cut: String = kid.chars().take(KID_SHOWN).collect();
            format!("keys[{index}] (kid {cut:?}…)")
        }
        Some(kid) => format!("keys[{index}] (kid {kid:?})"),
        None => format!("keys[{index}] (no kid)"),
    }
}

fn text<'a>(key: &'a Value, member: &str) -> Option<&'a str> {
    key.get(member).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The first private member of `key`, if it has one.
pub fn private_member(key: &Value) -> Option<&'static str> {
    PRIVATE_MEMBERS.into_iter().find(|m| key.get(*m).is_some())
}

/// Refuses the set when any key carries a private member.
pub fn refuse_private(keys: &[Value]) -> Result<(), KeyError> {
    for (index, key) in keys.iter().enumerate() {
        if let Some(member) = private_member(key) {
            return Err(KeyError::PrivateMember {
                key: describe(index, key),
                member,
            });
        }
    }
    Ok(())
}

/// Whether `alg` names a JWE key management algorithm (RFC 7518 §4.1, RFC 9864's
/// RSA-OAEP-384/512): a key with one encrypts, it never verifies a signature.
fn is_encryption_alg(alg: &str) -> bool {
    alg.starts_with("RSA-OAEP")
        || alg.starts_with("ECDH-ES")
        || alg.starts_with("PBES2-")
        || matches!(
            alg,
            "RSA1_5" | "dir" | "A128KW" | "A192KW" | "A256KW" | "A128GCMKW" | "A192GCMKW" | "A256GCMKW"
        )
}

/// An encryption key: `use: enc`, a JWE algorithm, or an X25519/X448 key (RFC 8037 §3.2:
/// those curves only agree keys). Keycloak publishes one (`RSA-OAEP`) beside its signing key.
pub fn is_encryption_key(key: &Value) -> bool {
    text(key, "use") == Some("enc")
        || text(key, "alg").is_some_and(is_encryption_alg)
        || (text(key, "kty") == Some("OKP") && matches!(text(key, "crv"), Some("X25519" | "X448")))
}

/// A public key a relying party can verify signatures with: RSA with `n` and `e`, EC with
/// `crv`, `x` and `y`, OKP Ed25519/Ed448 with `x`, and not an encryption key.
pub fn is_public_signing_key(key: &Value) -> bool {
    let shaped = match text(key, "kty") {
        Some("RSA") => text(key, "n").is_some() && text(key, "e").is_some(),
        Some("EC") => text(key, "crv").is_some() && text(key, "x").is_some() && text(key, "y").is_some(),
        Some("OKP") => matches!(text(key, "crv"), Some("Ed25519" | "Ed448")) && text(key, "x").is_some(),
        _ => false,
    };
    shaped && !is_encryption_key(key)
}

/// Refuses a set in which no key is a public signing key (an `oct`-only set, say).
pub fn require_signing_key(keys: &[Value]) -> Result<(), KeyError> {
    if keys.iter().any(is_public_signing_key) {
        Ok(())
    } else {
        Err(KeyError::NoSigningKey)
    }
}

/// How many keys of each capped family a set holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub rsa: usize,
    pub ec: usize,
    pub total: usize,
}

impl KeyCounts {
    pub fn of(keys: &[Value]) -> KeyCounts {
        let mut counts = KeyCounts::default();
        keys.iter().for_each(|k| counts.add(k));
        counts
    }

    pub fn add(&mut self, key: &Value) {
        match text(key, "kty") {
            Some("RSA") => self.rsa += 1,
            Some("EC") => self.ec += 1,
            _ => {}
        }
        self.total += 1;
    }
}

impl KeyCap {
    /// No limit at all (for tests of other rules).
    pub const UNLIMITED: KeyCap = KeyCap {
        rsa: usize::MAX,
        ec: usize::MAX,
        total: None,
    };

    /// Whether a set of keys with these counts may be published.
    pub fn allows(&self, counts: KeyCounts) -> bool {
        counts.rsa <= self.rsa && counts.ec <= self.ec && self.total.is_none_or(|t| counts.total <= t)
    }

    /// Whether `keys` may be published as one set.
    pub fn fits(&self, keys: &[Value]) -> bool {
        self.allows(KeyCounts::of(keys))
    }

    /// `fits`, with the reason; `pre_published` is how many of `keys` come from the
    /// pre-published key file, for the message.
    pub fn check(&self, keys: &[Value], pre_published: usize) -> Result<(), KeyError> {
        let counts = KeyCounts::of(keys);
        let over = [
            ("RSA keys", "max_rsa_keys", counts.rsa, self.rsa),
            ("EC keys", "max_ec_keys", counts.ec, self.ec),
            ("keys", "max_keys", counts.total, self.total.unwrap_or(usize::MAX)),
        ]
        .into_iter()
        .find(|(_, _, count, limit)| count > limit);
        match over {
            None => Ok(()),
            Some((what, setting, count, limit)) => Err(KeyError::TooMany {
                what,
                setting,
                count,
                limit,
                pre_published,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(body: &str) -> Vec<Value> {
        let value: Value = serde_json::from_str(body).unwrap();
        value["keys"].as_array().unwrap().clone()
    }

    #[test]
    fn fixture_sets_pass_every_rule() {
        for body in [
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gitlab/jwks.json")),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/keycloak/jwks.json"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kubernetes/jwks.json"
            )),
        ] {
            let keys = keys(body);
            refuse_private(&keys).unwrap();
            require_signing_key(&keys).unwrap();
            KeyCap::default().check(&keys, 0).unwrap();
        }
    }

    #[test]
    fn every_private_member_refuses_the_set_and_the_reason_names_the_key_not_the_material() {
        for member in PRIVATE_MEMBERS {
            let mut key = json!({"kty": "RSA", "kid": "signing-1", "n": "AQAB", "e": "AQAB"});
            key[member] = json!("c2VjcmV0LW1hdGVyaWFs");
            let set = [json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}), key];
            let err = refuse_private(&set).unwrap_err();
            assert_eq!(
                err,
                KeyError::PrivateMember {
                    key: r#"keys[1] (kid "signing-1")"#.into(),
                    member
                }
            );
            let reason = err.to_string();
            assert!(reason.contains(&format!("`{member}`")), "{reason}");
            assert!(!reason.contains("c2VjcmV0"), "the reason quotes key material: {reason}");
            assert_eq!(err.as_str(), "private_key");
        }
        // Even an empty or null private member is refused: it is never part of a public key.
        let set = [json!({"kty": "oct", "k": null})];
        assert!(refuse_private(&set).is_err());
    }

    #[test]
    fn long_kids_are_cut_in_reasons() {
        let kid = "k".repeat(500);
        let label = describe(0, &json!({"kid": kid}));
        assert!(label.len() < 100, "{label}");
        assert_eq!(describe(2, &json!({"kty": "EC"})), "keys[2] (no kid)");
    }

    #[test]
    fn a_usable_signing_key_is_required() {
        let refused = [
            r#"{"keys":[{"kty":"oct","kid":"h"}]}"#,
            r#"{"keys":[{"kty":"RSA","n":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"RSA","n":"","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"X25519","x":"AA"}]}"#,
            r#"{"keys":[{"kty":"OKP","x":"AA"}]}"#,
            r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"EC","alg":"ECDH-ES+A128KW","crv":"P-256","x":"AA","y":"AA"}]}"#,
            r#"{"keys":[{"kty":"RSA","n":1,"e":"AQAB"}]}"#,
        ];
        for body in refused {
            assert_eq!(require_signing_key(&keys(body)), Err(KeyError::NoSigningKey), "{body}");
        }
        let accepted = [
            r#"{"keys":[{"kty":"oct"},{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA","use":"sig"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#,
            r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#,
        ];
        for body in accepted {
            require_signing_key(&keys(body)).unwrap_or_else(|e| panic!("{body}: {e}"));
        }
    }

    fn rsa(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"kty": "RSA", "kid": format!("r{i}"), "n": "AQAB", "e": "AQAB"}))
            .collect()
    }

    fn ec(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"kty": "EC", "kid": format!("e{i}"), "crv": "P-256", "x": "AA", "y": "AA"}))
            .collect()
    }

    #[test]
    fn the_default_cap_is_aws_sts_limit_per_family() {
        let cap = KeyCap::default();
        let mut set = rsa(100);
        set.extend(ec(100));
        set.push(json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}));
        assert!(cap.fits(&set));
        cap.check(&set, 0).unwrap();
        set.extend(rsa(1));
        assert!(!cap.fits(&set));
        let err = cap.check(&set, 0).unwrap_err();
        assert_eq!(
            err,
            KeyError::TooMany {
                what: "RSA keys",
                setting: "max_rsa_keys",
                count: 101,
                limit: 100,
                pre_published: 0
            }
        );
        assert!(
            err.to_string()
                .starts_with("101 RSA keys to publish, over cache.max_rsa_keys = 100"),
            "{err}"
        );
        let err = KeyCap::default().check(&ec(101), 2).unwrap_err();
        assert!(
            err.to_string()
                .contains("101 EC keys to publish (2 of them pre-published)"),
            "{err}"
        );
    }

    #[test]
    fn a_total_cap_counts_every_key() {
        let cap = KeyCap {
            total: Some(10),
            ..KeyCap::default()
        };
        let mut set = rsa(5);
        set.extend(ec(5));
        assert!(cap.fits(&set));
        set.push(json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}));
        let err = cap.check(&set, 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("11 keys to publish, over cache.max_keys = 10"),
            "{err}"
        );
        let mut counts = KeyCounts::of(&set[..10]);
        assert!(cap.allows(counts));
        counts.add(&set[10]);
        assert!(!cap.allows(counts));
    }
}
