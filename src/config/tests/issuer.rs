//! `[[issuer]]`: one issuer's URLs, how its upstream is reached, and its name.

use crate::config::tests::fixtures::{error_of, load, with, ISSUER};

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
