//! Key set checks (what AWS STS accepts) and JWK signature verification.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::escape::quote;
use super::report::{Report, Sts};

/// Signature algorithms AWS STS accepts for web identity tokens.
pub const STS_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];

fn b64(field: Option<&Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field?.as_str()?.trim_end_matches('=')).ok()
}

/// Bits in an RSA modulus given as base64url (leading zero bytes ignored).
pub fn rsa_modulus_bits(n: &Value) -> Option<usize> {
    let bytes = b64(Some(n))?;
    let start = bytes.iter().position(|&b| b != 0)?;
    let bytes = &bytes[start..];
    Some(bytes.len() * 8 - bytes[0].leading_zeros() as usize)
}

/// Checks a key set as STS will use it; returns the keys when it is usable at all.
pub fn check_key_set(report: &mut Report, body: &[u8]) -> Option<Vec<Value>> {
    let keys = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => match map.remove("keys") {
            Some(Value::Array(keys)) => keys,
            _ => {
                report.fail(
                    "jwks.json",
                    "the key set has no `keys` array",
                    "serve a JWK Set: {\"keys\": [...]}",
                    Sts::Unreachable,
                );
                return None;
            }
        },
        _ => {
            report.fail(
                "jwks.json",
                "the key set is not a JSON object",
                "serve the IdP's JWK Set, not an HTML page or an error",
                Sts::Unreachable,
            );
            return None;
        }
    };
    report.pass("jwks.json", "a JSON object with a `keys` array");

    let kty = |k: &Value| k.get("kty").and_then(Value::as_str).unwrap_or_default().to_owned();
    let rsa = keys.iter().filter(|k| kty(k) == "RSA").count();
    let ec = keys.iter().filter(|k| kty(k) == "EC").count();
    let okp = keys.iter().filter(|k| kty(k) == "OKP").count();
    let other = keys.len() - rsa - ec - okp;
    let mut families = format!("{rsa} RSA, {ec} EC");
    if okp > 0 {
        families.push_str(&format!(", {okp} OKP (EdDSA, which STS does not accept)"));
    }
    if other > 0 {
        families.push_str(&format!(", {other} of another type"));
    }
    if keys.is_empty() {
        report.fail(
            "jwks.count",
            "the key set is empty",
            "the IdP has no signing key published; check its key configuration",
            Sts::NotValidated,
        );
    } else if rsa > 100 || ec > 100 {
        report.fail(
            "jwks.count",
            format!("{rsa} RSA and {ec} EC keys: STS accepts at most 100 of each"),
            "remove retired keys from the IdP's key set",
            Sts::Unreachable,
        );
    } else if rsa + ec == 0 {
        report.fail(
            "jwks.count",
            format!("{} keys: {families}; none RSA or EC", keys.len()),
            "STS verifies RSA and EC keys only; publish one",
            Sts::NotValidated,
        );
    } else {
        report.pass("jwks.count", format!("{} keys: {families}", keys.len()));
    }

    let kids: Vec<Option<&str>> = keys.iter().map(|k| k.get("kid").and_then(Value::as_str)).collect();
    let missing = kids.iter().filter(|k| k.is_none()).count();
    let mut seen = HashSet::new();
    let duplicates: Vec<String> = kids
        .iter()
        .flatten()
        .filter(|k| !seen.insert(**k))
        .map(|k| quote(k))
        .collect();
    if !duplicates.is_empty() {
        report.fail(
            "jwks.kid",
            format!("duplicate kid: {}", duplicates.join(", ")),
            "give every key a distinct kid",
            Sts::NotValidated,
        );
    } else if missing > 0 {
        report.warn(
            "jwks.kid",
            format!("{missing} key(s) without kid"),
            "publish a kid for every key, so tokens can name theirs",
            Some(Sts::NotValidated),
        );
    } else if !keys.is_empty() {
        report.pass("jwks.kid", "every key has a distinct kid");
    }

    let short: Vec<String> = keys
        .iter()
        .filter(|k| kty(k) == "RSA")
        .filter_map(|k| {
            let bits = k.get("n").and_then(rsa_modulus_bits).unwrap_or(0);
            (bits < 2048).then(|| {
                let kid = k
                    .get("kid")
                    .and_then(Value::as_str)
                    .map_or("(no kid)".to_owned(), quote);
                format!("{kid} ({bits} bits)")
            })
        })
        .collect();
    if rsa > 0 {
        if short.is_empty() {
            report.pass("jwks.rsa_size", "every RSA modulus has at least 2048 bits");
        } else {
            report.fail(
                "jwks.rsa_size",
                format!("RSA keys under 2048 bits: {}", short.join(", ")),
                "rotate to RSA keys of 2048 bits or more",
                Sts::NotValidated,
            );
        }
    }

    let odd: Vec<String> = keys
        .iter()
        .filter_map(|k| k.get("alg").and_then(Value::as_str))
        .filter(|alg| !STS_ALGS.contains(alg) && !alg.starts_with("RSA-OAEP") && !alg.starts_with("ECDH"))
        .map(quote)
        .collect();
    if odd.is_empty() {
        report.pass("jwks.alg", "every declared alg is one STS accepts");
    } else {
        report.warn(
            "jwks.alg",
            format!("algorithms STS does not accept: {}", odd.join(", ")),
            "sign tokens with RS256/384/512 or ES256/384/512",
            Some(Sts::NotValidated),
        );
    }

    let enc = keys
        .iter()
        .filter(|k| k.get("use").and_then(Value::as_str) == Some("enc"))
        .count();
    if enc > 0 {
        report.pass(
            "jwks.encryption_keys",
            format!("{enc} encryption key(s) (use: enc), ignored for signatures"),
        );
    }
    Some(keys)
}

/// Why a signature was not found good.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    /// The doctor cannot check this algorithm (so it says nothing about the token).
    #[error("the doctor cannot check this algorithm")]
    Unsupported,
    /// The key lacks a field the algorithm needs, or its value is not base64url.
    #[error("the key has no valid `{0}`")]
    InvalidKeyField(&'static str),
    /// ring's error says nothing more than this.
    #[error("the signature does not verify with this key")]
    Mismatch,
}

/// Verifies a JWS signature with a JWK.
pub fn verify(alg: &str, jwk: &Value, signing_input: &[u8], signature: &[u8]) -> Result<(), Unverified> {
    use ring::signature;
    let field = |name: &'static str| b64(jwk.get(name)).ok_or(Unverified::InvalidKeyField(name));
    let mismatch = |_| Unverified::Mismatch;
    match alg {
        "RS256" | "RS384" | "RS512" => {
            let (n, e) = (field("n")?, field("e")?);
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, signing_input, signature)
                .map_err(mismatch)
        }
        "ES256" | "ES384" => {
            let (x, y) = (field("x")?, field("y")?);
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let params = if alg == "ES256" {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P384_SHA384_FIXED
            };
            signature::UnparsedPublicKey::new(params, &point)
                .verify(signing_input, signature)
                .map_err(mismatch)
        }
        "EdDSA" if jwk.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
            let x = field("x")?;
            signature::UnparsedPublicKey::new(&signature::ED25519, &x)
                .verify(signing_input, signature)
                .map_err(mismatch)
        }
        _ => Err(Unverified::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unverified_signature_says_why() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key())});
        let signature = pair.sign(b"signed");
        assert_eq!(verify("EdDSA", &jwk, b"signed", signature.as_ref()), Ok(()));
        assert_eq!(
            verify("EdDSA", &jwk, b"altered", signature.as_ref()),
            Err(Unverified::Mismatch)
        );
        let no_n = serde_json::json!({"kty": "RSA", "e": "AQAB"});
        let err = verify("RS256", &no_n, b"signed", b"sig").unwrap_err();
        assert_eq!(err, Unverified::InvalidKeyField("n"));
        assert_eq!(err.to_string(), "the key has no valid `n`");
        assert_eq!(verify("HS256", &jwk, b"signed", b"sig"), Err(Unverified::Unsupported));
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        let n = Value::String(URL_SAFE_NO_PAD.encode([0u8, 0x80, 0, 0]));
        assert_eq!(rsa_modulus_bits(&n), Some(24));
        let n = Value::String(URL_SAFE_NO_PAD.encode([0x01, 0xff]));
        assert_eq!(rsa_modulus_bits(&n), Some(9));
        let fixture: Value = serde_json::from_str(include_str!("../../tests/fixtures/gitlab/jwks.json")).unwrap();
        assert_eq!(rsa_modulus_bits(&fixture["keys"][0]["n"]), Some(2048));
    }
}
