//! Structural checks an upstream document must pass before it may replace a good copy.

use serde_json::{Map, Value};

/// Why an upstream document was refused. Messages never quote document content beyond
/// field names, so they are safe to log and to count.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("body is not JSON ({0})")]
    NotJson(String),
    #[error("document is not a JSON object")]
    NotObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is not a string")]
    NotString(&'static str),
    #[error("field `{field}` is not an absolute http(s) URL")]
    NotUrl { field: &'static str },
    #[error("field `keys` is not an array")]
    KeysNotArray,
    #[error("field `keys` is empty")]
    NoKeys,
    #[error("keys[{0}] is not an object with a string `kty`")]
    BadKey(usize),
    /// A well-formed key set that breaks a hygiene rule (see `key_hygiene`).
    #[error(transparent)]
    Keys(#[from] crate::upstream::keyset::hygiene::KeyError),
}

impl ValidationError {
    /// A short stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValidationError::NotJson(_) => "not_json",
            ValidationError::NotObject => "not_object",
            ValidationError::Missing(_) => "missing_field",
            ValidationError::NotString(_) => "bad_field",
            ValidationError::NotUrl { .. } => "bad_field",
            ValidationError::KeysNotArray | ValidationError::NoKeys | ValidationError::BadKey(_) => "bad_keys",
            ValidationError::Keys(err) => err.as_str(),
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ValidationError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ValidationError::NotObject),
        Err(err) => Err(ValidationError::NotJson(err.to_string())),
    }
}

fn string_field<'a>(map: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, ValidationError> {
    match map.get(field) {
        None => Err(ValidationError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ValidationError::NotString(field)),
    }
}

/// A discovery document that has string `issuer` and an absolute http(s) `jwks_uri`.
/// Field order is preserved (serde_json's `preserve_order`).
#[derive(Debug)]
pub struct Discovery {
    pub fields: Map<String, Value>,
}

impl Discovery {
    pub fn parse(body: &[u8]) -> Result<Discovery, ValidationError> {
        let fields = parse_object(body)?;
        string_field(&fields, "issuer")?;
        let jwks_uri = string_field(&fields, "jwks_uri")?;
        let absolute = jwks_uri
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https" | "HTTP" | "HTTPS") && !rest.is_empty());
        if !absolute {
            return Err(ValidationError::NotUrl { field: "jwks_uri" });
        }
        Ok(Discovery { fields })
    }

    pub fn issuer(&self) -> &str {
        self.fields["issuer"].as_str().unwrap_or_default()
    }

    pub fn jwks_uri(&self) -> &str {
        self.fields["jwks_uri"].as_str().unwrap_or_default()
    }
}

/// Checks a key set: an object whose `keys` is a non-empty array of objects with `kty`.
/// Returns the number of keys.
pub fn check_jwks(body: &[u8]) -> Result<usize, ValidationError> {
    let map = parse_object(body)?;
    let keys = match map.get("keys") {
        None => return Err(ValidationError::Missing("keys")),
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(ValidationError::KeysNotArray),
    };
    if keys.is_empty() {
        return Err(ValidationError::NoKeys);
    }
    for (i, key) in keys.iter().enumerate() {
        if !key.get("kty").is_some_and(Value::is_string) {
            return Err(ValidationError::BadKey(i));
        }
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_documents_pass() {
        for body in [
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/gitlab/openid-configuration.json"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/keycloak/openid-configuration.json"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kubernetes/openid-configuration.json"
            )),
        ] {
            Discovery::parse(body.as_bytes()).unwrap();
        }
        assert_eq!(
            check_jwks(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/gitlab/jwks.json"
            ))),
            Ok(2)
        );
        assert_eq!(
            check_jwks(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/keycloak/jwks.json"
            ))),
            Ok(2)
        );
        check_jwks(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubernetes/jwks.json"
        )))
        .unwrap();
    }

    #[test]
    fn invalid_discovery_documents_are_refused() {
        let cases: [(&str, ValidationError); 7] = [
            ("<html>login</html>", ValidationError::NotJson(String::new())),
            ("[1,2]", ValidationError::NotObject),
            (r#"{"issuer":"https://a"}"#, ValidationError::Missing("jwks_uri")),
            (r#"{"jwks_uri":"https://a/k"}"#, ValidationError::Missing("issuer")),
            (
                r#"{"issuer":1,"jwks_uri":"https://a/k"}"#,
                ValidationError::NotString("issuer"),
            ),
            (
                r#"{"issuer":"https://a","jwks_uri":"/keys"}"#,
                ValidationError::NotUrl { field: "jwks_uri" },
            ),
            (
                r#"{"issuer":"https://a","jwks_uri":"https://a/k""#,
                ValidationError::NotJson(String::new()),
            ),
        ];
        for (body, expected) in cases {
            let err = Discovery::parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.as_str(), expected.as_str(), "{body}: {err}");
            if !matches!(expected, ValidationError::NotJson(_)) {
                assert_eq!(err, expected, "{body}");
            }
        }
    }

    #[test]
    fn invalid_key_sets_are_refused() {
        let cases = [
            ("", "not_json"),
            ("<!doctype html>", "not_json"),
            (r#"{"keys":[]}"#, "bad_keys"),
            (r#"{"keys":{}}"#, "bad_keys"),
            (r#"{"keys":[{"kid":"a"}]}"#, "bad_keys"),
            (r#"{"keys":[{"kty":"RSA"},"x"]}"#, "bad_keys"),
            (r#"{"key":[{"kty":"RSA"}]}"#, "missing_field"),
            (r#"{"keys":[{"kty":"RSA"}"#, "not_json"),
        ];
        for (body, reason) in cases {
            let err = check_jwks(body.as_bytes()).unwrap_err();
            assert_eq!(err.as_str(), reason, "{body}: {err}");
        }
    }
}
