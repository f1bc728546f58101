//! What a file that sets little gets, and the effective configuration rendered back.

use std::time::Duration;

use crate::config::tests::fixtures::{load, MINIMAL};

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.server.listen, None);
    assert_eq!(config.server.deadline, Duration::from_secs(2));
    assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(config.cache.max_age, Duration::from_secs(300));
    assert_eq!(config.cache.refresh, Duration::from_secs(60));
    assert_eq!(config.cache.stale_if_error, Duration::from_secs(86400));
    assert_eq!(config.cache.fetch_timeout, Duration::from_secs(5));
    assert_eq!(config.cache.max_document_bytes, 1 << 20);
    assert_eq!(config.cache.keep_removed_keys, Duration::ZERO);
    let issuer = &config.issuers[0];
    assert_eq!(issuer.name, "gitlab.example.com");
    assert_eq!(issuer.discovery_path(), "/.well-known/openid-configuration");
    assert_eq!(
        issuer.upstream_discovery_url(),
        "http://gitlab.internal:8080/.well-known/openid-configuration"
    );
}

#[test]
fn effective_config_round_trips_through_the_validator() {
    let text = "[server]\nlisten_plain = \"127.0.0.1:8080\"\ndeadline = \"1500ms\"\n\
        [cache]\nstate_dir = \"/var/lib/jwks-edge\"\n\
        [[issuer]]\npublic_url = \"https://oidc.k8s.example.com\"\nupstream = \"https://kubernetes.default.svc\"\n\
        public_jwks_path = \"/openid/v1/jwks\"\nupstream_jwks_url = \"https://kubernetes.default.svc/openid/v1/jwks\"\nupstream_ca = \"/ca.pem\"\n\
        withdrawn_kids = [\"2024-rotated\", \"leaked key\"]\n";
    let config = load(text).unwrap();
    assert_eq!(config.issuers[0].withdrawn_kids, ["2024-rotated", "leaked key"]);
    assert!(load(MINIMAL).unwrap().issuers[0].withdrawn_kids.is_empty());
    let rendered = config.to_string();
    let again = load(&rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(again.to_string(), rendered);
    assert!(rendered.contains("deadline = \"1s 500ms\""), "{rendered}");
}
