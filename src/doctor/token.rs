//! Token checks: what STS verifies in an ID token, against the issuer's published keys.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::keys::{verify, STS_ALGS};
use super::report::{sts, Report};

/// AWS allows this much clock skew on `exp`, `nbf` and `iat`.
const SKEW: Duration = Duration::from_secs(300);

fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn when(secs: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Runs every token check. `keys` is the published key set, when it could be read.
pub fn check_token(
    report: &mut Report,
    token: &str,
    issuer: &str,
    keys: Option<&[Value]>,
    audiences: &[String],
    now: SystemTime,
) {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    let decoded = match parts.as_slice() {
        [h, c, s] => decode_part(h)
            .zip(decode_part(c))
            .zip(URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()),
        _ => None,
    };
    let Some(((header, claims), signature)) = decoded else {
        report.fail(
            "token.decode",
            "not a compact JWS (three base64url parts: header, claims, signature)",
            "pass the raw ID token, not a file with quotes or a prefix",
            sts::NOT_VALIDATED,
        );
        return;
    };
    report.pass(
        "token.decode",
        format!("header {header}, subject {}", claims.get("sub").unwrap_or(&Value::Null)),
    );

    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if STS_ALGS.contains(&alg) {
        report.pass("token.alg", format!("{alg} is accepted"));
    } else {
        report.fail(
            "token.alg",
            format!("alg {alg:?} is not accepted by STS"),
            "sign with RS256/384/512 or ES256/384/512",
            sts::NOT_VALIDATED,
        );
    }

    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => report.pass("token.iss", "iss equals the issuer URL"),
        Some(iss) => report.fail(
            "token.iss",
            format!("iss is {iss:?}, the issuer URL is {issuer:?} (compared exactly, trailing slash included)"),
            "register the provider with exactly the token's iss, or fix the IdP's issuer",
            sts::NO_PROVIDER,
        ),
        None => report.fail(
            "token.iss",
            "the token has no iss",
            "the IdP must set iss",
            sts::NOT_VALIDATED,
        ),
    }

    let kid = header.get("kid").and_then(Value::as_str);
    let key = match (keys, kid) {
        (None, _) => {
            report.skip("token.kid", "the key set could not be read");
            None
        }
        (Some(keys), Some(kid)) => match keys.iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)) {
            Some(key) => {
                report.pass("token.kid", format!("kid {kid:?} is in the key set"));
                Some(key)
            }
            None => {
                report.fail(
                    "token.kid",
                    format!("kid {kid:?} is not in the published key set"),
                    "the key was rotated out or not yet published: refresh the proxy's copy or keep removed keys longer (cache.keep_removed_keys)",
                    sts::NOT_VALIDATED,
                );
                None
            }
        },
        (Some(keys), None) if keys.len() == 1 => {
            report.warn(
                "token.kid",
                "the token names no kid; the key set has one key",
                "have the IdP set kid in the token header",
                None,
            );
            keys.first()
        }
        (Some(_), None) => {
            report.fail(
                "token.kid",
                "the token names no kid and the key set has several keys",
                "have the IdP set kid in the token header",
                sts::NOT_VALIDATED,
            );
            None
        }
    };

    match key {
        // ring has no P-521: say so rather than call a valid token invalid.
        Some(_) if alg == "ES512" => report.warn(
            "token.signature",
            "ES512 signatures cannot be checked by the doctor",
            "verify this token's signature with another tool",
            None,
        ),
        Some(key) => {
            let signing_input = format!("{}.{}", parts[0], parts[1]);
            match verify(alg, key, signing_input.as_bytes(), &signature) {
                Ok(()) => report.pass("token.signature", "the signature verifies with the published key"),
                Err(reason) => report.fail(
                    "token.signature",
                    reason,
                    "the token was altered, or signed by a key other than the one published under its kid",
                    sts::NOT_VALIDATED,
                ),
            }
        }
        None => report.skip("token.signature", "no key to verify with"),
    }

    let now = unix(now);
    let skew = SKEW.as_secs() as i64;
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + skew < now => report.fail(
            "token.exp",
            format!("expired at {}", when(exp)),
            "get a fresh token; check the clock of the machine that requested it",
            sts::EXPIRED,
        ),
        Some(exp) => report.pass("token.exp", format!("valid until {}", when(exp))),
        None => report.fail(
            "token.exp",
            "the token has no exp",
            "the IdP must set exp",
            sts::NOT_VALIDATED,
        ),
    }
    for (id, claim) in [("token.nbf", "nbf"), ("token.iat", "iat")] {
        match claims.get(claim).and_then(Value::as_i64) {
            Some(t) if t - skew > now => report.fail(
                id,
                format!("{claim} is {}, in the future beyond 5 minutes of skew", when(t)),
                "fix the IdP's clock (NTP)",
                sts::NOT_VALIDATED,
            ),
            Some(t) => report.pass(id, format!("{claim} {}", when(t))),
            None if claim == "iat" => report.warn(id, "the token has no iat", "the IdP should set iat", None),
            None => {}
        }
    }

    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    if aud.is_empty() {
        report.fail(
            "token.aud",
            "the token has no aud",
            "request the token for the audience registered with the provider",
            sts::AUDIENCE,
        );
    } else if audiences.is_empty() {
        report.warn(
            "token.aud",
            format!("aud {aud:?}; no --audience given to compare with"),
            "pass --audience with the provider's client ID(s)",
            None,
        );
    } else if aud.iter().any(|a| audiences.contains(a)) {
        report.pass("token.aud", format!("aud {aud:?} is an expected audience"));
    } else {
        report.fail(
            "token.aud",
            format!("aud {aud:?} is none of {audiences:?}"),
            "add the token's aud to the provider's client IDs, or request the token for a registered audience",
            sts::AUDIENCE,
        );
    }

    if claims.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        report.pass("token.sub", "sub is present");
    } else {
        report.fail(
            "token.sub",
            "the token has no sub",
            "the IdP must set sub",
            sts::NOT_VALIDATED,
        );
    }
}
