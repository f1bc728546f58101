//! Token checks: what STS verifies in an ID token, against the issuer's published keys.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::escape::quote;
use super::keys::{verify, Unverified, STS_ALGS};
use super::numeric_date::{numeric_date, rfc3339, unix, NumericDate};
use super::report::{Report, Sts};

/// AWS allows this much clock skew on `exp`, `nbf` and `iat`.
const SKEW: Duration = Duration::from_secs(300);

fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token's claims, when it decodes as a compact JWS.
pub fn claims_of(token: &str) -> Option<Value> {
    let mut parts = token.trim().split('.');
    let (_, claims) = (parts.next()?, parts.next()?);
    decode_part(claims)
}

/// The token's `alg` header, when it decodes.
pub fn alg_of(token: &str) -> Option<String> {
    let header = decode_part(token.trim().split('.').next()?)?;
    header.get("alg").and_then(Value::as_str).map(str::to_owned)
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
            Sts::NotValidated,
        );
        return;
    };
    report.pass(
        "token.decode",
        format!("header {header}, subject {}", claims.get("sub").unwrap_or(&Value::Null)),
    );

    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if STS_ALGS.contains(&alg) {
        report.pass("token.alg", format!("{} is accepted", quote(alg)));
    } else if alg == "EdDSA" {
        report.fail(
            "token.alg",
            "alg \"EdDSA\" (Ed25519) is not accepted by AWS STS, whatever the key set holds",
            "have the IdP sign these tokens with RS256 or ES256 (STS verifies RSA and EC signatures only)",
            Sts::NotValidated,
        );
    } else {
        report.fail(
            "token.alg",
            format!("alg {} is not accepted by STS", quote(alg)),
            "sign with RS256/384/512 or ES256/384/512",
            Sts::NotValidated,
        );
    }

    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => report.pass("token.iss", "iss equals the issuer URL"),
        Some(iss) => report.fail(
            "token.iss",
            format!(
                "iss is {}, the issuer URL is {} (compared exactly, trailing slash included)",
                quote(iss),
                quote(issuer)
            ),
            "register the provider with exactly the token's iss, or fix the IdP's issuer",
            Sts::NoProvider,
        ),
        None => report.fail(
            "token.iss",
            "the token has no iss",
            "the IdP must set iss",
            Sts::NotValidated,
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
                report.pass("token.kid", format!("kid {} is in the key set", quote(kid)));
                Some(key)
            }
            None => {
                report.fail(
                    "token.kid",
                    format!("kid {} is not in the published key set", quote(kid)),
                    "the key was rotated out or not yet published: refresh the proxy's copy or keep removed keys longer (cache.keep_removed_keys)",
                    Sts::NotValidated,
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
                Sts::NotValidated,
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
                Err(Unverified::Unsupported) => report.skip(
                    "token.signature",
                    format!(
                        "{} signatures are not checked by the doctor (see token.alg)",
                        quote(alg)
                    ),
                ),
                Err(reason @ (Unverified::InvalidKeyField(_) | Unverified::Mismatch)) => report.fail(
                    "token.signature",
                    reason.to_string(),
                    "the token was altered, or signed by a key other than the one published under its kid",
                    Sts::NotValidated,
                ),
            }
        }
        None => report.skip("token.signature", "no key to verify with"),
    }

    check_times(report, &claims, unix(now));

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
            Sts::Audience,
        );
    } else if audiences.is_empty() {
        report.warn(
            "token.aud",
            format!("aud {}; no --audience given to compare with", quote_all(&aud)),
            "pass --audience with the provider's client ID(s)",
            None,
        );
    } else if aud.iter().any(|a| audiences.contains(a)) {
        report.pass("token.aud", format!("aud {} is an expected audience", quote_all(&aud)));
    } else {
        report.fail(
            "token.aud",
            format!("aud {} is none of {}", quote_all(&aud), quote_all(audiences)),
            "add the token's aud to the provider's client IDs, or request the token for a registered audience",
            Sts::Audience,
        );
    }

    if claims.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        report.pass("token.sub", "sub is present");
    } else {
        report.fail(
            "token.sub",
            "the token has no sub",
            "the IdP must set sub",
            Sts::NotValidated,
        );
    }
}

/// A claim's JSON, cut short: a token can hold megabytes where a number belongs.
fn shown(value: &Value) -> String {
    let json = value.to_string();
    match json.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &json[..end]),
        None => json,
    }
}

fn quote_all(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `exp`, `nbf` and `iat` against `now`, with AWS's skew; saturating, whatever the values.
fn check_times(report: &mut Report, claims: &Value, now: i64) {
    let skew = SKEW.as_secs() as i64;
    match numeric_date(claims.get("exp")) {
        NumericDate::Seconds(exp) if exp.saturating_add(skew) < now => report.fail(
            "token.exp",
            format!("expired at {}", rfc3339(exp)),
            "get a fresh token; check the clock of the machine that requested it",
            Sts::Expired,
        ),
        NumericDate::Seconds(exp) => report.pass("token.exp", format!("valid until {}", rfc3339(exp))),
        NumericDate::Absent => report.fail(
            "token.exp",
            "the token has no exp",
            "the IdP must set exp",
            Sts::NotValidated,
        ),
        NumericDate::Invalid => report.fail(
            "token.exp",
            format!("exp is {}, not a number of seconds", shown(&claims["exp"])),
            "the IdP must set exp to a NumericDate (seconds since the epoch)",
            Sts::NotValidated,
        ),
    }
    for (id, claim) in [("token.nbf", "nbf"), ("token.iat", "iat")] {
        match numeric_date(claims.get(claim)) {
            NumericDate::Seconds(t) if t.saturating_sub(skew) > now => report.fail(
                id,
                format!("{claim} is {}, in the future beyond 5 minutes of skew", rfc3339(t)),
                "fix the IdP's clock (NTP)",
                Sts::NotValidated,
            ),
            NumericDate::Seconds(t) => report.pass(id, format!("{claim} {}", rfc3339(t))),
            NumericDate::Invalid => report.fail(
                id,
                format!("{claim} is {}, not a number of seconds", shown(&claims[claim])),
                "the IdP must write NumericDate claims as seconds since the epoch",
                Sts::NotValidated,
            ),
            NumericDate::Absent if claim == "iat" => {
                report.warn(id, "the token has no iat", "the IdP should set iat", None)
            }
            NumericDate::Absent => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn token(claims: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(b"not a signature")
        )
    }

    /// JSON texts for a NumericDate claim, weighted towards the edges.
    fn extreme() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            Just(i64::MAX.to_string()),
            Just(i64::MIN.to_string()),
            Just(u64::MAX.to_string()),
            Just("1e300".to_owned()),
            Just("-1e300".to_owned()),
            Just("1e400".to_owned()),
            Just(format!("9{}", "9".repeat(300))),
            Just("253402300800".to_owned()),
            Just("-0.5".to_owned()),
            Just("\"soon\"".to_owned()),
            Just("null".to_owned()),
        ]
    }

    fn at(offset: i64) -> SystemTime {
        let magnitude = Duration::from_secs(offset.unsigned_abs());
        let t = if offset >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        };
        t.unwrap_or(UNIX_EPOCH)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn extreme_times_never_panic(
            exp in extreme(),
            nbf in extreme(),
            iat in extreme(),
            now in prop_oneof![Just(1_700_000_000i64), any::<i64>(), Just(i64::MAX), Just(i64::MIN)],
        ) {
            let claims = format!(r#"{{"iss":"https://i","sub":"s","aud":"a","exp":{exp},"nbf":{nbf},"iat":{iat}}}"#);
            let mut report = Report::default();
            check_token(&mut report, &token(&claims), "https://i", Some(&[]), &["a".into()], at(now));
            // Both renderings of the report work too.
            let _ = report.render(true);
            let _ = report.to_json_text();
            let check = report.get("token.exp").expect("token.exp is always reported");
            let parsed: Value = serde_json::from_str(&claims).unwrap();
            match numeric_date(parsed.get("exp")) {
                NumericDate::Seconds(e) => {
                    let now = unix(at(now));
                    let expired = i128::from(e) + 300 < i128::from(now);
                    prop_assert_eq!(check.status == Status::Fail, expired, "{:?} at {}", check, now);
                }
                _ => prop_assert_eq!(check.status, Status::Fail),
            }
        }
    }
}
