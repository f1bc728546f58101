use super::*;

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
        public_jwks_path = \"/openid/v1/jwks\"\nupstream_jwks_url = \"https://kubernetes.default.svc/openid/v1/jwks\"\nupstream_ca = \"/ca.pem\"\n";
    let config = load(text).unwrap();
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
