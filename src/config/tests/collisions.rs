//! The issuers as a set: at least one, and no two claiming one public URL or document path.

use crate::config::tests::fixtures::{error_of, load, ISSUER};

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
