use std::path::Path;
use std::time::Duration;

use crate::config::error::ConfigError;
use crate::config::settings::{AcmeChallenge, Config, Readiness, LETS_ENCRYPT};

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/jwks-edge"))
}

const MINIMAL: &str = r#"
[server]
listen_plain = "127.0.0.1:8080"

[[issuer]]
public_url = "https://gitlab.example.com"
upstream = "http://gitlab.internal:8080"
"#;

fn with(extra_server: &str, extra_cache: &str, issuer: &str) -> String {
    format!(
        "[server]\nlisten_plain = \"127.0.0.1:8080\"\n{extra_server}\n[cache]\n{extra_cache}\n[[issuer]]\n{issuer}\n"
    )
}

const ISSUER: &str = "public_url = \"https://gitlab.example.com\"\nupstream = \"http://gitlab.internal:8080\"";

fn error_of(text: &str) -> String {
    let err = load(text).expect_err("config should be rejected");
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

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
fn tls_enables_https_listener_and_paths_resolve_against_the_file() {
    let config = load(&format!(
        "[server.tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n[[issuer]]\n{ISSUER}\nupstream_ca = \"ca.pem\"\n"
    ))
    .unwrap_err();
    // upstream_ca on a plain-http upstream is a mistake worth naming.
    assert!(config.to_string().contains("issuer[0].upstream_ca"), "{config}");

    let config = load(
        "[server.tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n[[issuer]]\npublic_url = \"https://a.example\"\nupstream = \"https://kc:8443\"\nupstream_ca = \"ca.pem\"\n"
    )
    .unwrap();
    assert_eq!(config.server.listen, Some("0.0.0.0:8443".parse().unwrap()));
    let tls = config.server.tls.as_ref().unwrap();
    assert_eq!(tls.certs[0].cert, Path::new("/etc/jwks-edge/tls/cert.pem"));
    assert_eq!(tls.certs[0].key, Path::new("/abs/key.pem"));
    assert_eq!(tls.reload_interval, Duration::from_secs(10));
    assert_eq!(
        config.issuers[0].upstream_ca.as_deref(),
        Some(Path::new("/etc/jwks-edge/ca.pem"))
    );
}

#[test]
fn acme_defaults_to_lets_encrypt_and_the_issuer_hosts() {
    let config = load(&format!(
        "[server.tls.acme]\ncontact = [\"ops@example.com\"]\ncache_dir = \"acme\"\n\
         [[issuer]]\n{ISSUER}\n[[issuer]]\npublic_url = \"https://kc.example.com/realms/a\"\nupstream = \"http://kc:8080/realms/a\"\n\
         [[issuer]]\npublic_url = \"https://KC.example.com/realms/b\"\nupstream = \"http://kc:8080/realms/b\"\n"
    ))
    .unwrap();
    assert_eq!(config.server.listen, Some("0.0.0.0:8443".parse().unwrap()));
    let tls = config.server.tls.as_ref().unwrap();
    assert!(tls.certs.is_empty());
    let acme = tls.acme.as_ref().unwrap();
    assert_eq!(acme.directory, LETS_ENCRYPT);
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(
        acme.domains,
        ["gitlab.example.com", "kc.example.com"],
        "one name per host"
    );
    assert_eq!(acme.cache_dir, Path::new("/etc/jwks-edge/acme"));
    assert_eq!(acme.challenge, AcmeChallenge::TlsAlpn01);
    assert!(!acme.one_per_domain);
    assert_eq!(acme.renew_before, None);
    // The effective config renders back into a config that loads the same way.
    let again = load(&config.to_string()).unwrap();
    assert_eq!(again.server.tls.unwrap().acme.unwrap().domains, acme.domains);
}

#[test]
fn acme_errors_name_the_key_and_quote_the_value() {
    let acme = |lines: &str, issuer: &str| {
        format!("[server]\nlisten_plain = \"127.0.0.1:8080\"\n[server.tls.acme]\ncache_dir = \"acme\"\n{lines}\n[[issuer]]\n{issuer}\n")
    };
    let cases = [
        (acme("directory = \"http://ca.example/dir\"", ISSUER), "server.tls.acme.directory = \"http://ca.example/dir\""),
        (acme("contact = [\"ops\"]", ISSUER), "server.tls.acme.contact[0] = \"ops\""),
        (acme("domains = [\"*.example.com\"]", ISSUER), "server.tls.acme.domains[0] = \"*.example.com\": wildcard"),
        (acme("domains = [\"a.example\", \"A.example\"]", ISSUER), "server.tls.acme.domains[1] = \"A.example\": is listed twice"),
        (acme("domains = [\"192.0.2.1\"]", ISSUER), "IP address"),
        (acme("challenge = \"dns-01\"", ISSUER), "server.tls.acme.challenge = \"dns-01\""),
        (acme("renew_before = \"soon\"", ISSUER), "server.tls.acme.renew_before = \"soon\""),
        (acme("directory_ca = \"\"", ISSUER), "server.tls.acme.directory_ca"),
        (acme("", "public_url = \"https://192.0.2.7\"\nupstream = \"http://idp\""), "issuer[0].public_url = \"https://192.0.2.7\""),
        (
            format!("[server.tls.acme]\ncache_dir = \"acme\"\nchallenge = \"http-01\"\n[[issuer]]\n{ISSUER}"),
            "needs server.listen_plain",
        ),
        (format!("[server.tls.acme]\n[[issuer]]\n{ISSUER}"), "server.tls.acme.cache_dir"),
        (
            format!("[server.tls]\ncert = \"c.pem\"\n[server.tls.acme]\ncache_dir = \"a\"\n[[issuer]]\n{ISSUER}"),
            "server.tls.cert = \"c.pem\": cannot be combined with [server.tls.acme]",
        ),
        (
            format!("[server.tls.acme]\ncache_dir = \"a\"\n[[server.tls.certs]]\ncert = \"c\"\nkey = \"k\"\n[[issuer]]\n{ISSUER}"),
            "server.tls.certs: cannot be combined",
        ),
        (format!("[server.tls]\n[[issuer]]\n{ISSUER}"), "server.tls.cert: a certificate file is required"),
    ];
    for (text, expected) in cases {
        let msg = error_of(&text);
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}

#[test]
fn server_errors_name_the_key_and_quote_the_value() {
    let cases = [
        (
            format!("[server]\nlisten_plain = \"nope\"\n[[issuer]]\n{ISSUER}"),
            "server.listen_plain = \"nope\"",
        ),
        (
            with("deadline = \"2 parsecs\"", "", ISSUER),
            "server.deadline = \"2 parsecs\"",
        ),
        (with("deadline = \"6s\"", "", ISSUER), "must be under 5s"),
        (with("deadline = \"0s\"", "", ISSUER), "greater than zero"),
        (
            with("listen = \"0.0.0.0:8443\"", "", ISSUER),
            "server.listen = \"0.0.0.0:8443\"",
        ),
        (with("colour = \"blue\"", "", ISSUER), "unknown field `colour`"),
        (
            format!("[admin]\nlisten = \"localhost\"\n[server]\nlisten_plain = \"127.0.0.1:1\"\n[[issuer]]\n{ISSUER}"),
            "admin.listen = \"localhost\"",
        ),
        (format!("[[issuer]]\n{ISSUER}"), "no listener"),
        (
            format!("[server.tls]\ncert = \"c.pem\"\n[[issuer]]\n{ISSUER}"),
            "server.tls.key: the certificate's private key file is required",
        ),
    ];
    for (text, expected) in cases {
        let msg = error_of(&text);
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}

#[test]
fn cache_errors_name_the_key_and_quote_the_value() {
    let cases = [
        ("max_age = \"5 minutes-ish\"", "cache.max_age = \"5 minutes-ish\""),
        ("refresh = \"10ms\"", "cache.refresh = \"10ms\": must be at least 1s"),
        ("stale_if_error = \"forever\"", "cache.stale_if_error = \"forever\""),
        ("fetch_timeout = \"\"", "cache.fetch_timeout = \"\""),
        ("max_document_bytes = 10", "cache.max_document_bytes = \"10\""),
        ("state_dir = \"\"", "cache.state_dir = \"\""),
        ("max_age = 300", "invalid type"),
        (
            "stale_if_error = \"30s\"",
            "cache.stale_if_error = \"30s\": must be at least",
        ),
        (
            "keep_removed_keys = \"a while\"",
            "cache.keep_removed_keys = \"a while\"",
        ),
    ];
    for (line, expected) in cases {
        let msg = error_of(&with("", line, ISSUER));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}

#[test]
fn issuer_errors_name_the_key_and_quote_the_value() {
    let cases = [
        ("public_url = \"http://gitlab.example.com\"\nupstream = \"http://x\"", "issuer[0].public_url = \"http://gitlab.example.com\": must be https"),
        ("public_url = \"gitlab.example.com\"\nupstream = \"http://x\"", "issuer[0].public_url = \"gitlab.example.com\""),
        ("public_url = \"https://a.example/?x=1\"\nupstream = \"http://x\"", "query or fragment"),
        ("public_url = \"https://a.example\"\nupstream = \"gopher://x\"", "issuer[0].upstream = \"gopher://x\""),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\npublic_jwks_path = \"jwks\"", "issuer[0].public_jwks_path = \"jwks\""),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\npublic_jwks_path = \"/a/../b\"", "issuer[0].public_jwks_path"),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\npublic_jwks_path = \"/.well-known/openid-configuration\"", "discovery document's path"),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\nupstream_jwks_url = \"/keys\"", "issuer[0].upstream_jwks_url = \"/keys\""),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\nname = \"two words\"", "issuer[0].name = \"two words\""),
        ("public_url = \"https://a.example\"", "missing field `upstream`"),
        (
            "public_url = \"https://a.example\"\nupstream = \"https://x\"\nupstream_client_cert = \"c.pem\"",
            "issuer[0].upstream_client_cert = \"c.pem\": needs upstream_client_key",
        ),
        (
            "public_url = \"https://a.example\"\nupstream = \"http://x\"\nupstream_client_cert = \"c.pem\"\nupstream_client_key = \"k.pem\"",
            "only applies to an https upstream",
        ),
        (
            "public_url = \"https://a.example\"\nupstream = \"https://x\"\nupstream_client_cert = \"c.pem\"\nupstream_client_key = \"\"",
            "issuer[0].upstream_client_key = \"\": a file path is required",
        ),
        (
            "public_url = \"https://a.example\"\nupstream = \"http://x\"\nupstream_host = \"a b\"",
            "issuer[0].upstream_host = \"a b\"",
        ),
        (
            "public_url = \"https://a.example\"\nupstream = \"http://x\"\nupstream_bearer_token_file = \"\"",
            "issuer[0].upstream_bearer_token_file = \"\"",
        ),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\nupstrem_ca = \"x\"", "unknown field `upstrem_ca`"),
        (
            "public_url = \"https://a.example\"\nupstream = \"http://x\"\nwithdrawn_kids = [\"a\", \"\"]",
            "issuer[0].withdrawn_kids[1] = \"\": a key id (`kid`) is required",
        ),
        (
            "public_url = \"https://a.example\"\nupstream = \"http://x\"\nwithdrawn_kids = [\"a\", \"a\"]",
            "issuer[0].withdrawn_kids[1] = \"a\": is listed twice",
        ),
        ("public_url = \"https://a.example\"\nupstream = \"http://x\"\nwithdrawn_kids = \"a\"", "withdrawn_kids"),
    ];
    for (issuer, expected) in cases {
        let msg = error_of(&with("", "", issuer));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}

#[test]
fn issuers_must_exist_and_not_collide() {
    assert!(error_of("[server]\nlisten_plain = \"127.0.0.1:1\"\n").contains("at least one [[issuer]]"));
    let two = format!(
        "[server]\nlisten_plain = \"127.0.0.1:1\"\n[[issuer]]\n{ISSUER}\n[[issuer]]\npublic_url = \"https://GITLAB.example.com/\"\nupstream = \"http://y\"\n"
    );
    let msg = error_of(&two);
    assert!(
        msg.contains("issuer[1].public_url = \"https://GITLAB.example.com/\""),
        "{msg}"
    );
}

#[test]
fn colliding_key_set_paths_name_both_issuers() {
    let realm = |name: &str, extra: &str| {
        format!(
            "[[issuer]]\nname = \"{name}\"\npublic_url = \"https://auth.example.com/realms/{name}\"\n\
             upstream = \"http://kc:8080/realms/{name}\"\n{extra}\n"
        )
    };
    let server = "[server]\nlisten_plain = \"127.0.0.1:1\"\n";
    let same = format!(
        "{server}{}{}",
        realm("prod", "public_jwks_path = \"/keys\""),
        realm("dev", "public_jwks_path = \"/keys\"")
    );
    let msg = error_of(&same);
    assert!(msg.contains("issuer[1].public_jwks_path = \"/keys\""), "{msg}");
    assert!(
        msg.contains("\"prod\"") && msg.contains("\"dev\""),
        "names both issuers: {msg}"
    );

    let discovery = format!(
        "{server}{}{}",
        realm("prod", ""),
        realm(
            "dev",
            "public_jwks_path = \"/realms/prod/.well-known/openid-configuration\""
        )
    );
    let msg = error_of(&discovery);
    assert!(
        msg.contains("issuer[1].public_jwks_path") && msg.contains("discovery path of issuer[0] (\"prod\")"),
        "{msg}"
    );

    // The same path on another host is another route.
    let other_host = format!(
        "{server}{}[[issuer]]\npublic_url = \"https://other.example.com\"\nupstream = \"http://o\"\npublic_jwks_path = \"/keys\"\n",
        realm("prod", "public_jwks_path = \"/keys\"")
    );
    load(&other_host).unwrap();
}

#[test]
fn a_bearer_token_travels_only_over_tls_unless_the_operator_accepts_otherwise() {
    let token = "upstream_bearer_token_file = \"/run/token\"";
    let msg = error_of(&with("", "", &format!("{ISSUER}\n{token}")));
    assert!(
        msg.contains("issuer[0].upstream_bearer_token_file = \"/run/token\""),
        "{msg}"
    );
    assert!(
        msg.contains("issuer[0].upstream = \"http://gitlab.internal:8080\""),
        "{msg}"
    );
    assert!(
        msg.contains("issuer[0].upstream_bearer_token_over_http = true"),
        "{msg}"
    );

    let accepted = load(&with(
        "",
        "",
        &format!("{ISSUER}\n{token}\nupstream_bearer_token_over_http = true"),
    ))
    .unwrap();
    assert!(accepted.issuers[0].upstream_bearer_token_over_http);

    let https = "public_url = \"https://oidc.example.com\"\nupstream = \"https://kubernetes.default.svc\"";
    load(&with("", "", &format!("{https}\n{token}"))).unwrap();
    let msg = error_of(&with(
        "",
        "",
        &format!("{https}\n{token}\nupstream_jwks_url = \"http://10.0.0.1/keys\""),
    ));
    assert!(
        msg.contains("issuer[0].upstream_jwks_url = \"http://10.0.0.1/keys\""),
        "{msg}"
    );
}

#[test]
fn durations_are_bounded_so_that_no_clock_arithmetic_can_overflow() {
    for (section, key) in [
        ("server", "idle_timeout"),
        ("cache", "refresh"),
        ("cache", "keep_removed_keys"),
        ("cache", "max_age"),
    ] {
        let text = if section == "server" {
            with(&format!("{key} = \"9999999999years\""), "", ISSUER)
        } else {
            with("", &format!("{key} = \"9999999999years\""), ISSUER)
        };
        let msg = error_of(&text);
        assert!(
            msg.contains(&format!("{section}.{key} = \"9999999999years\": must be at most 3650d")),
            "{msg}"
        );
    }
}

#[test]
fn readiness_keys_are_checked() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.admin.readiness, Readiness::Any);
    assert_eq!(config.admin.startup_grace, Duration::from_secs(30));
    let admin = |lines: &str| format!("{MINIMAL}\n[admin]\n{lines}\n");
    assert_eq!(
        load(&admin("readiness = \"all\"")).unwrap().admin.readiness,
        Readiness::All
    );
    let msg = error_of(&admin("readiness = \"most\""));
    assert!(msg.contains("admin.readiness = \"most\""), "{msg}");
    let msg = error_of(&admin("startup_grace = \"1h\""));
    assert!(
        msg.contains("admin.startup_grace = \"1h\": must be at most 10m"),
        "{msg}"
    );
    let msg = error_of(&admin("startup_grace = \"soon\""));
    assert!(msg.contains("admin.startup_grace = \"soon\""), "{msg}");
}

#[test]
fn several_realms_on_one_host_are_distinct_issuers() {
    let text = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc:8080/realms/prod\"\n\
        [[issuer]]\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://kc:8080/realms/dev\"\n";
    let config = load(text).unwrap();
    assert_eq!(
        config.issuers[0].discovery_path(),
        "/realms/prod/.well-known/openid-configuration"
    );
    assert_eq!(config.issuers[1].name, "auth.example.com/realms/dev");
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

#[test]
fn the_example_acme_block_is_a_valid_alternative_to_files() {
    let example = include_str!("../../config.example.toml");
    let mut in_acme = false;
    let mut lines = Vec::new();
    for line in example.lines() {
        if line == "# [server.tls.acme]" {
            in_acme = true;
        } else if line.is_empty() {
            in_acme = false;
        }
        if in_acme {
            lines.push(line.trim_start_matches("# ").to_owned());
        } else if !line.starts_with("cert = ") && !line.starts_with("key = ") {
            lines.push(line.to_owned());
        }
    }
    let config = load(&lines.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    let acme = config.server.tls.unwrap().acme.unwrap();
    assert_eq!(acme.directory, LETS_ENCRYPT);
    assert_eq!(acme.domains, ["gitlab.example.com"]);
    assert_eq!(acme.renew_before, Some(Duration::from_secs(30 * 86400)));
}

#[test]
fn revalidate_after_defaults_to_5s_and_0s_turns_it_off() {
    assert_eq!(load(MINIMAL).unwrap().cache.revalidate_after, Duration::from_secs(5));
    let cache = |line: &str| load(&with("", line, ISSUER)).map(|c| c.cache.revalidate_after);
    assert_eq!(cache("revalidate_after = \"0s\"").unwrap(), Duration::ZERO);
    assert_eq!(cache("revalidate_after = \"2s\"").unwrap(), Duration::from_secs(2));
    // Longer than the period is allowed: it then only acts while refreshes fail.
    assert_eq!(cache("revalidate_after = \"2m\"").unwrap(), Duration::from_secs(120));
    for (line, expected) in [
        (
            "revalidate_after = \"500ms\"",
            "cache.revalidate_after = \"500ms\": must be at least 1s",
        ),
        (
            "revalidate_after = \"off\"",
            "cache.revalidate_after = \"off\": expected a duration",
        ),
        ("revalidate_after = \"\"", "cache.revalidate_after = \"\""),
        ("revalidate_after = 5", "invalid type"),
        (
            "revalidate_after = \"9999999999years\"",
            "cache.revalidate_after = \"9999999999years\": must be at most 3650d",
        ),
    ] {
        let msg = error_of(&with("", line, ISSUER));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
    let shown = load(MINIMAL).unwrap().to_string();
    assert!(shown.contains("revalidate_after = \"5s\""), "{shown}");
}

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

#[test]
fn connection_limits_default_to_a_budget_shared_by_the_public_listeners() {
    let one = load(MINIMAL).unwrap().server.limits;
    assert_eq!(one.max_connections, 512);
    assert_eq!(one.max_connections_per_address, 256);
    assert_eq!(one.send_timeout, Duration::from_secs(10));
    assert_eq!(one.send_buffer_bytes, 16384);
    assert_eq!(one.max_concurrent_streams, 16);
    let two = load(&format!(
        "[server]\nlisten_plain = \"127.0.0.1:8080\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[[issuer]]\n{ISSUER}"
    ))
    .unwrap()
    .server
    .limits;
    assert_eq!((two.max_connections, two.max_connections_per_address), (256, 128));
    let set = load(&with("max_connections = 100\nsend_buffer_bytes = 0", "", ISSUER))
        .unwrap()
        .server
        .limits;
    assert_eq!((set.max_connections, set.max_connections_per_address), (100, 50));
    assert_eq!(set.send_buffer_bytes, 0, "0 leaves the kernel's autotuning");
    let rendered = load(&with(
        "max_connections_per_address = 7\nsend_timeout = \"3s\"",
        "",
        ISSUER,
    ))
    .unwrap()
    .to_string();
    assert!(rendered.contains("max_connections_per_address = 7\n"), "{rendered}");
    assert!(rendered.contains("send_timeout = \"3s\"\n"), "{rendered}");
    assert!(rendered.contains("send_buffer_bytes = 16384\n"), "{rendered}");
}

#[test]
fn connection_limit_errors_name_the_key_and_quote_the_value() {
    let cases = [
        (
            "max_connections_per_address = 0",
            "server.max_connections_per_address = \"0\": must be between 1 and server.max_connections (512)",
        ),
        (
            "max_connections = 100\nmax_connections_per_address = 101",
            "server.max_connections_per_address = \"101\": must be between 1 and server.max_connections (100)",
        ),
        ("max_connections_per_address = \"ten\"", "invalid type"),
        (
            "send_timeout = \"never\"",
            "server.send_timeout = \"never\": expected a duration",
        ),
        (
            "send_timeout = \"0s\"",
            "server.send_timeout = \"0s\": must be greater than zero",
        ),
        (
            "send_buffer_bytes = 100",
            "server.send_buffer_bytes = \"100\": must be 0 (the kernel's autotuning) or between 4096",
        ),
        ("send_buffer_bytes = -1", "server.send_buffer_bytes = \"-1\""),
    ];
    for (line, expected) in cases {
        let msg = error_of(&with(line, "", ISSUER));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}
