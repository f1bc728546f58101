//! Turns an upstream discovery document into the public one and decides where the key set
//! is published and fetched (README, "Routing": the three `jwks_uri` shapes).

use bytes::Bytes;
use serde_json::Value;

use crate::config::Issuer;
use crate::model::{JwksShape, JwksTarget};
use crate::upstream::checks::{Discovery, ValidationError};

/// The path (without query or fragment) of an absolute URL; `/` when it has none.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Maps the upstream's `jwks_uri` to a public URL and an upstream fetch URL.
pub fn map_jwks_uri(issuer: &Issuer, jwks_uri: &str) -> JwksTarget {
    let (shape, public_url, upstream_url) = if let Some(rest) = issuer.upstream.strip_prefix(jwks_uri) {
        (JwksShape::UnderUpstream, issuer.public.join(rest), jwks_uri.to_owned())
    } else if let Some(rest) = issuer.public.strip_prefix(jwks_uri) {
        (
            JwksShape::AlreadyPublic,
            jwks_uri.to_owned(),
            issuer.upstream.join(rest),
        )
    } else {
        let path = path_of(jwks_uri);
        (
            JwksShape::Elsewhere,
            issuer.public.join(path),
            issuer.upstream.join(path),
        )
    };
    let (public_url, public_path) = match &issuer.public_jwks_path {
        Some(path) => (format!("{}{}", issuer.public.origin(), path), path.clone()),
        None => {
            let public_path = path_of(&public_url).to_owned();
            (public_url, public_path)
        }
    };
    JwksTarget {
        shape,
        public_url,
        public_path,
        upstream_url: issuer.upstream_jwks_url.clone().unwrap_or(upstream_url),
    }
}

/// The public discovery document, ready to serve, and where its key set lives.
#[derive(Debug)]
pub struct PublicDiscovery {
    pub body: Bytes,
    pub jwks: JwksTarget,
    /// The upstream's `issuer`, never rewritten: it must equal the tokens' `iss`, so it
    /// differs from the configured public URL only when the IdP is misconfigured, and no
    /// rewrite could fix that (relying parties would accept the document and refuse
    /// every token).
    pub issuer: String,
}

/// Validates an upstream discovery document and rewrites it for the public: `jwks_uri`
/// becomes the public key set URL, every other string under the upstream base except
/// `issuer` moves to the public base; all other fields, and the order of all fields, are
/// kept.
pub fn rewrite_discovery(issuer: &Issuer, body: &[u8]) -> Result<PublicDiscovery, ValidationError> {
    let mut doc = Discovery::parse(body)?;
    let jwks = map_jwks_uri(issuer, doc.jwks_uri());
    for (name, value) in doc.fields.iter_mut() {
        match name.as_str() {
            "jwks_uri" => *value = Value::String(jwks.public_url.clone()),
            "issuer" => {}
            _ => rewrite_urls(issuer, value),
        }
    }
    let issuer_field = doc.issuer().to_owned();
    let body = serde_json::to_vec(&Value::Object(doc.fields)).expect("a JSON value always serialises");
    Ok(PublicDiscovery {
        // Kept for the whole refresh period by every issuer: without the spare capacity
        // that serialising grew (up to half again the document).
        body: Bytes::from(body.into_boxed_slice()),
        jwks,
        issuer: issuer_field,
    })
}

fn rewrite_urls(issuer: &Issuer, value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(rest) = issuer.upstream.strip_prefix(s) {
                *s = issuer.public.join(rest);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_urls(issuer, v)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_urls(issuer, v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn issuer(public_url: &str, upstream: &str, extra: &str) -> Issuer {
        let text = format!(
            "[server]\nlisten_plain = \"127.0.0.1:1\"\n[[issuer]]\npublic_url = \"{public_url}\"\nupstream = \"{upstream}\"\n{extra}\n"
        );
        Config::from_toml(&text, Path::new(".")).unwrap().issuers.remove(0)
    }

    fn field_names(body: &[u8]) -> Vec<String> {
        let value: Value = serde_json::from_slice(body).unwrap();
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn keycloak_urls_under_the_backend_move_to_the_public_base() {
        let kc = issuer(
            "https://auth.example.com/realms/prod",
            "http://keycloak.internal:8080/realms/prod",
            "",
        );
        let raw = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keycloak/openid-configuration.json"
        ));
        let public = rewrite_discovery(&kc, raw).unwrap();
        assert_eq!(public.jwks.shape, JwksShape::UnderUpstream);
        assert_eq!(
            public.jwks.public_url,
            "https://auth.example.com/realms/prod/protocol/openid-connect/certs"
        );
        assert_eq!(public.jwks.public_path, "/realms/prod/protocol/openid-connect/certs");
        assert_eq!(
            public.jwks.upstream_url,
            "http://keycloak.internal:8080/realms/prod/protocol/openid-connect/certs"
        );
        let text = std::str::from_utf8(&public.body).unwrap();
        assert!(!text.contains("keycloak.internal"), "internal URL left in {text}");
        assert_eq!(field_names(&public.body), field_names(raw), "field order must be kept");
        // Nested objects (mtls_endpoint_aliases) are rewritten too, non-URL values kept.
        let value: Value = serde_json::from_slice(&public.body).unwrap();
        let original: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(value["issuer"], "https://auth.example.com/realms/prod");
        assert_eq!(value["grant_types_supported"], original["grant_types_supported"]);
        assert_eq!(
            value["token_endpoint"],
            "https://auth.example.com/realms/prod/protocol/openid-connect/token"
        );
    }

    #[test]
    fn gitlab_public_jwks_uri_is_kept_and_fetched_from_the_upstream() {
        let gl = issuer("https://gitlab.example.com", "http://gitlab.internal:8080", "");
        let raw = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gitlab/openid-configuration.json"
        ));
        let public = rewrite_discovery(&gl, raw).unwrap();
        assert_eq!(public.jwks.shape, JwksShape::AlreadyPublic);
        assert_eq!(
            public.jwks.public_url,
            "https://gitlab.example.com/oauth/discovery/keys"
        );
        assert_eq!(public.jwks.public_path, "/oauth/discovery/keys");
        assert_eq!(
            public.jwks.upstream_url,
            "http://gitlab.internal:8080/oauth/discovery/keys"
        );
        // Nothing was under the upstream base: the document is the same JSON.
        let before: Value = serde_json::from_slice(raw).unwrap();
        let after: Value = serde_json::from_slice(&public.body).unwrap();
        assert_eq!(before, after);
        assert_eq!(field_names(&public.body), field_names(raw));
    }

    #[test]
    fn kubernetes_in_cluster_jwks_uri_is_published_on_the_public_host() {
        let k8s = issuer("https://oidc.k8s.example.com", "https://kubernetes.default.svc", "");
        let raw = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubernetes/openid-configuration.json"
        ));
        let public = rewrite_discovery(&k8s, raw).unwrap();
        assert_eq!(public.jwks.shape, JwksShape::Elsewhere);
        assert_eq!(public.jwks.public_url, "https://oidc.k8s.example.com/openid/v1/jwks");
        assert_eq!(
            public.jwks.upstream_url,
            "https://kubernetes.default.svc/openid/v1/jwks"
        );
    }

    #[test]
    fn overrides_win_for_both_public_path_and_upstream_url() {
        let k8s = issuer(
            "https://oidc.k8s.example.com",
            "https://kubernetes.default.svc",
            "public_jwks_path = \"/keys.json\"\nupstream_jwks_url = \"https://10.0.0.1:6443/openid/v1/jwks\"",
        );
        let target = map_jwks_uri(&k8s, "https://10.96.0.1:443/openid/v1/jwks");
        assert_eq!(target.public_url, "https://oidc.k8s.example.com/keys.json");
        assert_eq!(target.public_path, "/keys.json");
        assert_eq!(target.upstream_url, "https://10.0.0.1:6443/openid/v1/jwks");
    }

    #[test]
    fn an_issuer_under_the_upstream_base_is_published_unchanged() {
        let kc = issuer("https://auth.example.com/realms/prod", "http://kc:8080/realms/prod", "");
        let raw = br#"{"issuer":"http://kc:8080/realms/prod","jwks_uri":"http://kc:8080/realms/prod/certs","token_endpoint":"http://kc:8080/realms/prod/token"}"#;
        let public = rewrite_discovery(&kc, raw).unwrap();
        assert_eq!(public.issuer, "http://kc:8080/realms/prod");
        assert_eq!(
            std::str::from_utf8(&public.body).unwrap(),
            r#"{"issuer":"http://kc:8080/realms/prod","jwks_uri":"https://auth.example.com/realms/prod/certs","token_endpoint":"https://auth.example.com/realms/prod/token"}"#
        );
    }

    #[test]
    fn lookalike_prefixes_are_not_rewritten() {
        let kc = issuer("https://auth.example.com/realms/prod", "http://kc:8080/realms/prod", "");
        let raw = br#"{"issuer":"https://auth.example.com/realms/prod","jwks_uri":"http://kc:8080/realms/prod/certs","a":"http://kc:8080/realms/production/x","b":"http://kc:8080/realms/prod","n":1.50,"c":[true,null,"http://kc:8080/realms/prod/y"]}"#;
        let public = rewrite_discovery(&kc, raw).unwrap();
        assert_eq!(
            std::str::from_utf8(&public.body).unwrap(),
            r#"{"issuer":"https://auth.example.com/realms/prod","jwks_uri":"https://auth.example.com/realms/prod/certs","a":"http://kc:8080/realms/production/x","b":"https://auth.example.com/realms/prod","n":1.50,"c":[true,null,"https://auth.example.com/realms/prod/y"]}"#
        );
    }
}
