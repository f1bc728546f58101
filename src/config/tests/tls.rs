//! `[server.tls]`: the HTTPS listener's certificates, from files or from ACME.

use std::path::Path;
use std::time::Duration;

use crate::config::settings::{AcmeChallenge, LETS_ENCRYPT};
use crate::config::tests::fixtures::{error_of, load, ISSUER};

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
fn the_example_acme_block_is_a_valid_alternative_to_files() {
    let example = include_str!("../../../config.example.toml");
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
