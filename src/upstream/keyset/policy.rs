//! `KeyPolicy`: what an issuer publishes of the keys it is given — which keys, and whether a missing `use` and `alg` are filled in.

use serde_json::{Map, Value};

use crate::config::keys::{KeyPolicy, PublishKeys};
use crate::upstream::keyset::hygiene::{is_encryption_key, is_public_signing_key};

/// RSA signature algorithms, in the order preferred when the discovery document lists
/// several and not RS256.
const RSA_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// The `alg` a signing key implies, or `None` when its type says nothing certain.
///
/// - RSA: `RS256`, what every relying party accepts and most IdPs sign with, unless the
///   discovery document's `id_token_signing_alg_values_supported` (`id_token_algs`)
///   names RSA algorithms without RS256: then the first of those it names.
/// - EC: the curve decides (RFC 7518 §3.4): P-256 → ES256, P-384 → ES384, P-521 →
///   ES512, secp256k1 → ES256K (RFC 8812).
/// - OKP: Ed25519 and Ed448 → EdDSA (RFC 8037 §3.1).
pub fn derived_alg(key: &Value, id_token_algs: &[String]) -> Option<&'static str> {
    match key.get("kty").and_then(Value::as_str)? {
        "RSA" => {
            let listed = |alg: &&str| id_token_algs.iter().any(|a| a == alg);
            if listed(&"RS256") {
                return Some("RS256");
            }
            let first_listed = id_token_algs.iter().find_map(|a| RSA_ALGS.into_iter().find(|r| r == a));
            Some(first_listed.unwrap_or("RS256"))
        }
        "EC" => match key.get("crv").and_then(Value::as_str)? {
            "P-256" => Some("ES256"),
            "P-384" => Some("ES384"),
            "P-521" => Some("ES512"),
            "secp256k1" => Some("ES256K"),
            _ => None,
        },
        "OKP" => match key.get("crv").and_then(Value::as_str)? {
            "Ed25519" | "Ed448" => Some("EdDSA"),
            _ => None,
        },
        _ => None,
    }
}

/// The discovery document's `id_token_signing_alg_values_supported` (empty when the
/// document is absent, unreadable or has no such list).
pub fn id_token_algs(discovery: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(discovery) else {
        return Vec::new();
    };
    value
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
        .map(|algs| algs.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl KeyPolicy {
    /// Whether this policy can change a key set at all.
    pub fn changes_anything(&self) -> bool {
        *self != KeyPolicy::default()
    }

    /// Whether the discovery document's algorithms are needed (for `fill_alg`).
    pub fn needs_id_token_algs(&self) -> bool {
        self.fill_alg
    }

    /// Applies the policy to `keys` in place and says whether anything changed. Keys
    /// that stay keep their order and every member; filled members are appended.
    pub fn apply(&self, keys: &mut Vec<Value>, id_token_algs: &[String]) -> bool {
        let before = keys.len();
        if self.publish == PublishKeys::Signing {
            keys.retain(|key| !is_encryption_key(key));
        }
        let mut changed = keys.len() != before;
        for key in keys.iter_mut() {
            changed |= self.fill(key, id_token_algs);
        }
        changed
    }

    /// Fills `use` and `alg` of one key as configured; true when it added one.
    fn fill(&self, key: &mut Value, id_token_algs: &[String]) -> bool {
        if !(self.fill_use || self.fill_alg) || !is_public_signing_key(key) {
            return false;
        }
        let alg = self.fill_alg.then(|| derived_alg(key, id_token_algs)).flatten();
        let Some(members) = key.as_object_mut() else {
            return false;
        };
        let mut changed = false;
        if self.fill_use && !members.contains_key("use") && !members.contains_key("key_ops") {
            insert(members, "use", "sig");
            changed = true;
        }
        if let (Some(alg), false) = (alg, members.contains_key("alg")) {
            insert(members, "alg", alg);
            changed = true;
        }
        changed
    }
}

fn insert(members: &mut Map<String, Value>, name: &str, value: &str) {
    members.insert(name.to_owned(), Value::String(value.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keycloak() -> Vec<Value> {
        let set: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keycloak/jwks.json"
        )))
        .unwrap();
        set["keys"].as_array().unwrap().clone()
    }

    fn algs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_policy_changes_nothing() {
        let mut keys = keycloak();
        assert!(!KeyPolicy::default().changes_anything());
        assert!(!KeyPolicy::default().apply(&mut keys, &[]));
        assert_eq!(keys, keycloak());
    }

    #[test]
    fn signing_only_drops_keycloaks_encryption_key_and_keeps_the_rest_untouched() {
        let policy = KeyPolicy {
            publish: PublishKeys::Signing,
            ..KeyPolicy::default()
        };
        let mut keys = keycloak();
        assert_eq!(keys[1]["use"], "enc");
        assert!(policy.apply(&mut keys, &[]));
        assert_eq!(keys, [keycloak()[0].clone()]);
        // Encryption keys without `use`, by their algorithm or curve, go too.
        let mut keys = vec![
            json!({"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"}),
        ];
        assert!(policy.apply(&mut keys, &[]));
        assert_eq!(keys, [json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"})]);
        // Nothing to drop: unchanged.
        assert!(!policy.apply(&mut keys, &[]));
    }

    #[test]
    fn use_and_alg_are_filled_when_missing_and_kept_when_present() {
        let policy = KeyPolicy {
            fill_use: true,
            fill_alg: true,
            ..KeyPolicy::default()
        };
        let mut keys = vec![
            json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB", "x-extra": [1, 2]}),
            json!({"kty": "EC", "kid": "e", "crv": "P-384", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "kid": "o", "crv": "Ed25519", "x": "AA"}),
            json!({"kty": "RSA", "kid": "kept", "use": "sig", "alg": "PS256", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "EC", "kid": "ops", "key_ops": ["verify"], "crv": "P-256", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "kid": "curve?", "crv": "brainpoolP256r1", "x": "AA", "y": "AA"}),
        ];
        assert!(policy.apply(&mut keys, &[]));
        let members = |i: usize| keys[i].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(members(0), ["kty", "kid", "n", "e", "x-extra", "use", "alg"]);
        assert_eq!((&keys[0]["use"], &keys[0]["alg"]), (&json!("sig"), &json!("RS256")));
        assert_eq!(keys[1]["alg"], "ES384");
        assert_eq!(keys[2]["alg"], "EdDSA");
        assert_eq!(keys[3]["alg"], "PS256", "an existing alg is never replaced");
        assert_eq!(
            keys[4],
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"})
        );
        assert!(keys[5].get("use").is_none(), "use is not combined with key_ops");
        assert_eq!(keys[5]["alg"], "ES256");
        assert_eq!(keys[6]["use"], "sig");
        assert!(keys[6].get("alg").is_none(), "an unknown curve implies no alg");
        // Applying again changes nothing.
        let once = keys.clone();
        assert!(!policy.apply(&mut keys, &[]));
        assert_eq!(keys, once);
    }

    #[test]
    fn use_alone_or_alg_alone() {
        let key = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        let mut keys = vec![key.clone()];
        KeyPolicy {
            fill_use: true,
            ..KeyPolicy::default()
        }
        .apply(&mut keys, &[]);
        assert_eq!(keys[0]["use"], "sig");
        assert!(keys[0].get("alg").is_none());
        let mut keys = vec![key];
        KeyPolicy {
            fill_alg: true,
            ..KeyPolicy::default()
        }
        .apply(&mut keys, &[]);
        assert!(keys[0].get("use").is_none());
        assert_eq!(keys[0]["alg"], "ES256");
    }

    #[test]
    fn the_rsa_alg_follows_the_discovery_document() {
        let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert_eq!(derived_alg(&rsa, &[]), Some("RS256"));
        // Keycloak lists PS384 first but RS256 too: RS256.
        let keycloak: Vec<String> = id_token_algs(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keycloak/openid-configuration.json"
        )));
        assert_eq!(keycloak[0], "PS384");
        assert_eq!(derived_alg(&rsa, &keycloak), Some("RS256"));
        assert_eq!(derived_alg(&rsa, &algs(&["ES256", "PS256", "RS512"])), Some("PS256"));
        assert_eq!(derived_alg(&rsa, &algs(&["ES256", "EdDSA"])), Some("RS256"));
        for (crv, alg) in [
            ("P-256", "ES256"),
            ("P-384", "ES384"),
            ("P-521", "ES512"),
            ("secp256k1", "ES256K"),
        ] {
            assert_eq!(derived_alg(&json!({"kty": "EC", "crv": crv}), &[]), Some(alg));
        }
        assert_eq!(derived_alg(&json!({"kty": "OKP", "crv": "Ed448"}), &[]), Some("EdDSA"));
        assert_eq!(derived_alg(&json!({"kty": "oct"}), &[]), None);
    }

    #[test]
    fn discovery_algorithms_are_read_leniently() {
        assert_eq!(
            id_token_algs(br#"{"id_token_signing_alg_values_supported":["RS256",1,"ES256"]}"#),
            ["RS256", "ES256"]
        );
        assert!(id_token_algs(b"not json").is_empty());
        assert!(id_token_algs(br#"{"id_token_signing_alg_values_supported":"RS256"}"#).is_empty());
    }
}
