//! The key set settings: the caps in `[cache]` and each issuer's key policy.

use std::path::Path;

use crate::config::tests::fixtures::{error_of, load, with, ISSUER, MINIMAL};

#[test]
fn key_caps_and_key_policy_default_to_aws_limits_and_the_upstreams_keys() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.cache.key_cap, crate::config::keys::KeyCap::default());
    assert_eq!(
        (
            config.cache.key_cap.rsa,
            config.cache.key_cap.ec,
            config.cache.key_cap.total
        ),
        (100, 100, None)
    );
    assert_eq!(config.issuers[0].key_policy, crate::config::keys::KeyPolicy::default());
    assert_eq!(config.issuers[0].prepublished_jwks_file, None);

    let config = load(&with(
        "",
        "max_rsa_keys = 20\nmax_ec_keys = 5\nmax_keys = 10",
        &format!("{ISSUER}\npublish_keys = \"signing\"\nfill_key_use = true\nfill_key_alg = true\nprepublished_jwks_file = \"next-keys.json\""),
    ))
    .unwrap();
    assert_eq!(
        config.cache.key_cap,
        crate::config::keys::KeyCap {
            rsa: 20,
            ec: 5,
            total: Some(10)
        }
    );
    let issuer = &config.issuers[0];
    assert_eq!(issuer.key_policy.publish, crate::config::keys::PublishKeys::Signing);
    assert!(issuer.key_policy.fill_use && issuer.key_policy.fill_alg);
    assert_eq!(
        issuer.prepublished_jwks_file.as_deref(),
        Some(Path::new("/etc/jwks-edge/next-keys.json"))
    );
    let rendered = config.to_string();
    assert_eq!(load(&rendered).unwrap().to_string(), rendered);
    for line in [
        "max_keys = 10",
        "publish_keys = \"signing\"",
        "fill_key_alg = true",
        "next-keys.json",
    ] {
        assert!(rendered.contains(line), "{line} in {rendered}");
    }
}

#[test]
fn key_cap_and_key_policy_errors_name_the_key_and_quote_the_value() {
    for (line, expected) in [
        (
            "max_rsa_keys = 0",
            "cache.max_rsa_keys = \"0\": must be between 1 and 10000",
        ),
        ("max_ec_keys = -1", "cache.max_ec_keys = \"-1\""),
        ("max_keys = 100000", "cache.max_keys = \"100000\""),
    ] {
        let msg = error_of(&with("", line, ISSUER));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
    for (line, expected) in [
        (
            "publish_keys = \"sig\"",
            "issuer[0].publish_keys = \"sig\": expected \"all\"",
        ),
        (
            "prepublished_jwks_file = \"\"",
            "issuer[0].prepublished_jwks_file = \"\"",
        ),
        ("fill_key_use = \"yes\"", "invalid type"),
    ] {
        let msg = error_of(&with("", "", &format!("{ISSUER}\n{line}")));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}
