//! Property tests: routing and rewriting never panic, never reach beyond the configured
//! upstream, and keep every field that is not a URL under the upstream base.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use jwks_edge::cache::routes::{normalize_host, Route, Router};
use jwks_edge::cache::store::DocumentStore;
use jwks_edge::config::{Config, Issuer};
use jwks_edge::model::document::{CachePolicy, DocKind, Document};
use jwks_edge::model::DocId;
use jwks_edge::upstream::checks::check_jwks;
use jwks_edge::upstream::rewrite::{map_jwks_uri, rewrite_discovery};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn config() -> Config {
    let text = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc.internal:8080/realms/prod\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://kc.internal:8080/realms/dev\"\n\
        [[issuer]]\npublic_url = \"https://oidc.example.com\"\nupstream = \"https://k8s.internal:6443\"\npublic_jwks_path = \"/openid/v1/jwks\"\n";
    Config::from_toml(text, Path::new(".")).unwrap()
}

fn policy() -> CachePolicy {
    CachePolicy {
        max_age: std::time::Duration::from_secs(300),
        refresh: std::time::Duration::from_secs(60),
        fetch_timeout: std::time::Duration::from_secs(5),
        stale_if_error: std::time::Duration::from_secs(3600),
    }
}

/// A store where the prod realm's discovery document says where its key set lives.
fn store(issuers: &[Issuer]) -> DocumentStore {
    let store = DocumentStore::new(issuers.len());
    let target = map_jwks_uri(
        &issuers[0],
        "http://kc.internal:8080/realms/prod/protocol/openid-connect/certs",
    );
    let doc = Document::new(
        DocKind::Discovery,
        Bytes::new(),
        SystemTime::now(),
        Some(target),
        &policy(),
    );
    store.put(DocId::discovery(0), Arc::new(doc));
    store
}

fn host_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("auth.example.com".to_owned()),
        Just("AUTH.example.com:8443".to_owned()),
        Just("oidc.example.com.".to_owned()),
        "[a-zA-Z0-9.:\\[\\]-]{0,40}",
        any::<String>(),
    ]
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/realms/prod/.well-known/openid-configuration".to_owned()),
        Just("/realms/prod/protocol/openid-connect/certs".to_owned()),
        Just("/openid/v1/jwks".to_owned()),
        "/realms/(prod|dev)/[a-z./%-]{0,40}",
        "/[a-zA-Z0-9./%?#-]{0,60}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn routing_only_ever_names_a_configured_document(host in host_strategy(), path in path_strategy()) {
        let config = config();
        let store = store(&config.issuers);
        // The prod realm's discovery refresher publishes the key set path its document names.
        let router = Router::new(&config.issuers);
        let learned = store.get(DocId::discovery(0)).and_then(|d| d.jwks.clone());
        router.claim(0, learned.as_ref()).unwrap();
        match router.route(&host, &path) {
            Route::Doc(id) => {
                let issuer = &config.issuers[id.issuer];
                let normalized = normalize_host(&host).unwrap();
                prop_assert_eq!(normalized.as_ref(), issuer.public.host());
                let expected = match id.kind {
                    DocKind::Discovery => issuer.discovery_path(),
                    DocKind::Jwks => store
                        .get(DocId::discovery(id.issuer))
                        .and_then(|d| d.jwks.clone())
                        .map(|t| t.public_path)
                        .or_else(|| issuer.public_jwks_path.clone())
                        .unwrap(),
                };
                prop_assert_eq!(path, expected);
            }
            Route::Pending(i) => {
                // Only an issuer whose key set path is not known yet can be waited for.
                prop_assert_eq!(i, 1);
            }
            Route::NotFound => {}
        }
    }

    #[test]
    fn a_discovery_document_cannot_send_the_proxy_anywhere_else(jwks_uri in prop_oneof![
        "https?://[a-z0-9.:@-]{1,30}/[a-zA-Z0-9./%?#-]{0,40}",
        "http://kc.internal:8080/realms/prod[a-zA-Z0-9./%?#-]{0,40}",
        "https://auth.example.com/realms/prod[a-zA-Z0-9./%?#-]{0,40}",
        any::<String>(),
    ]) {
        let config = config();
        for issuer in &config.issuers {
            let target = map_jwks_uri(issuer, &jwks_uri);
            prop_assert!(
                issuer.upstream.strip_prefix(&target.upstream_url).is_some(),
                "{} fetched from {}", jwks_uri, target.upstream_url
            );
            prop_assert!(issuer.public.strip_prefix(&target.public_url).is_some() || issuer.public_jwks_path.is_some());
            prop_assert!(target.public_path.starts_with('/'));
        }
    }

    #[test]
    fn rewriting_keeps_every_field_that_is_not_an_upstream_url(
        fields in prop::collection::vec(("[a-z_]{1,12}", json_value()), 0..12),
        jwks_rest in "[a-z/]{0,20}",
    ) {
        let config = config();
        let issuer = &config.issuers[0];
        let mut input = Map::new();
        input.insert("issuer".into(), Value::String(issuer.public_url.clone()));
        input.insert("jwks_uri".into(), Value::String(format!("http://kc.internal:8080/realms/prod/{jwks_rest}")));
        for (name, value) in fields {
            if name != "issuer" && name != "jwks_uri" {
                input.insert(name, value);
            }
        }
        let body = serde_json::to_vec(&Value::Object(input.clone())).unwrap();
        let public = rewrite_discovery(issuer, &body).unwrap();
        let output: Value = serde_json::from_slice(&public.body).unwrap();
        let output = output.as_object().unwrap();
        prop_assert_eq!(output.keys().collect::<Vec<_>>(), input.keys().collect::<Vec<_>>());
        for (name, before) in &input {
            if name == "jwks_uri" {
                prop_assert_eq!(&output[name], &Value::String(public.jwks.public_url.clone()));
            } else {
                prop_assert_eq!(&output[name], &expected_rewrite(issuer, before));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let config = config();
        let _ = rewrite_discovery(&config.issuers[0], &body);
        let _ = check_jwks(&body);
    }
}

/// What rewriting must do to one value: strings under the upstream base move to the
/// public base, everything else is kept.
fn expected_rewrite(issuer: &Issuer, value: &Value) -> Value {
    match value {
        Value::String(s) => match issuer.upstream.strip_prefix(s) {
            Some(rest) => Value::String(issuer.public.join(rest)),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| expected_rewrite(issuer, v)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expected_rewrite(issuer, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<String>().prop_map(Value::String),
        "(http|https)://kc.internal:8080/realms/(prod|production|dev)[a-z/?#]{0,12}".prop_map(Value::String),
        "https://auth.example.com/[a-z/]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
