//! `[[publish]]`: url schemes, issuer names, endpoint and region, and objects two issuers would share.

use crate::config::settings::Cloud;
use crate::config::tests::fixtures::{error_of, load, ISSUER};

fn with_publish(publish: &str) -> String {
    format!("[server]\nlisten_plain = \"127.0.0.1:1\"\n[[issuer]]\n{ISSUER}\n[[publish]]\n{publish}\n")
}

#[test]
fn a_sink_names_its_bucket_prefix_and_by_default_every_issuer() {
    let config = load(&with_publish(
        "url = \"s3://oidc-docs/gitlab/\"\nendpoint = \"http://127.0.0.1:8333/\"\nregion = \"eu-west-1\"",
    ))
    .unwrap();
    let sink = &config.publish[0];
    assert_eq!(sink.cloud, Cloud::S3);
    assert_eq!((sink.bucket.as_str(), sink.prefix.as_str()), ("oidc-docs", "gitlab"));
    assert_eq!(sink.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(sink.region.as_deref(), Some("eu-west-1"));
    assert_eq!(sink.issuers, [0]);
    assert_eq!(
        sink.object_key(&config.issuers[0].discovery_path()),
        "gitlab/.well-known/openid-configuration"
    );
    assert_eq!(sink.object_key("/oauth/discovery/keys"), "gitlab/oauth/discovery/keys");
    let shown = config.to_string();
    assert!(
        shown.contains("[[publish]]\nurl = \"s3://oidc-docs/gitlab/\""),
        "{shown}"
    );
    assert!(shown.contains("issuers = [\"gitlab.example.com\"]"), "{shown}");
}

#[test]
fn a_bad_scheme_bucket_or_prefix_names_the_key_and_value() {
    for (url, reason) in [
        ("https://bucket/x", "unknown scheme \"https\""),
        ("s3:bucket", "expected s3://bucket/prefix"),
        ("s3://", "is not a bucket name"),
        ("gs://b/a//c", "empty, '.' or '..' segment"),
    ] {
        let msg = error_of(&with_publish(&format!("url = {url:?}")));
        assert!(msg.contains(&format!("publish[0].url = {url:?}")), "{msg}");
        assert!(msg.contains(reason), "{url}: {msg}");
    }
}

#[test]
fn endpoint_region_and_unknown_keys_are_checked() {
    let msg = error_of(&with_publish("url = \"s3://b\"\nendpoint = \"127.0.0.1:8333\""));
    assert!(msg.contains("publish[0].endpoint = \"127.0.0.1:8333\""), "{msg}");
    let msg = error_of(&with_publish("url = \"gs://b\"\nregion = \"us-east-1\""));
    assert!(msg.contains("publish[0].region") && msg.contains("only s3://"), "{msg}");
    let msg = error_of(&with_publish("url = \"s3://b\"\naccess_key_id = \"AKIA\""));
    assert!(
        msg.contains("unknown field `access_key_id`"),
        "credentials never go in the file: {msg}"
    );
}

#[test]
fn an_unknown_or_repeated_issuer_name_is_refused() {
    let msg = error_of(&with_publish("url = \"s3://b\"\nissuers = [\"gitlab\"]"));
    assert!(
        msg.contains("publish[0].issuers = \"gitlab\": is no issuer's name"),
        "{msg}"
    );
    assert!(msg.contains("gitlab.example.com"), "lists the names there are: {msg}");
    let msg = error_of(&with_publish("url = \"s3://b\"\nissuers = []"));
    assert!(msg.contains("publish[0].issuers = \"[]\""), "{msg}");
    let twice = "url = \"s3://b\"\nissuers = [\"gitlab.example.com\", \"gitlab.example.com\"]";
    assert!(error_of(&with_publish(twice)).contains("is listed twice"));
}

#[test]
fn a_config_that_only_publishes_needs_no_listener() {
    let config = load(&format!("[[issuer]]\n{ISSUER}\n[[publish]]\nurl = \"az://docs\"\n")).unwrap();
    assert!(config.server.listen.is_none() && config.server.listen_plain.is_none());
    assert_eq!(config.publish[0].cloud, Cloud::Azure);
}

#[test]
fn two_issuers_writing_one_object_name_both() {
    let issuers = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
        [[issuer]]\nname = \"one\"\npublic_url = \"https://one.example.com\"\nupstream = \"http://a\"\n\
        [[issuer]]\nname = \"two\"\npublic_url = \"https://two.example.com\"\nupstream = \"http://b\"\n\
        public_jwks_path = \"/keys\"\n\
        [[issuer]]\nname = \"three\"\npublic_url = \"https://three.example.com/keys\"\nupstream = \"http://c\"\n";
    // Different hosts, one path: a bucket has no hosts.
    let msg = error_of(&format!(
        "{issuers}[[publish]]\nurl = \"s3://b/p\"\nissuers = [\"one\", \"two\"]\n"
    ));
    assert!(msg.contains("publish[0].issuers = \"two\""), "{msg}");
    assert!(
        msg.contains("\"one\"") && msg.contains("\"p/.well-known/openid-configuration\""),
        "{msg}"
    );
    // A configured key set path against another issuer's discovery document is not a
    // collision ("/keys" vs "/keys/.well-known/..."), nor are sinks of their own.
    load(&format!(
        "{issuers}[[publish]]\nurl = \"s3://b/p\"\nissuers = [\"two\", \"three\"]\n\
         [[publish]]\nurl = \"s3://b/q\"\nissuers = [\"one\"]\n"
    ))
    .unwrap();
    let clash = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
        [[issuer]]\nname = \"a\"\npublic_url = \"https://a.example.com/x\"\nupstream = \"http://a\"\npublic_jwks_path = \"/jwks\"\n\
        [[issuer]]\nname = \"b\"\npublic_url = \"https://b.example.com/y\"\nupstream = \"http://b\"\npublic_jwks_path = \"/jwks\"\n\
        [[publish]]\nurl = \"gs://b\"\n";
    let msg = error_of(clash);
    assert!(msg.contains("(key set)") && msg.contains("\"jwks\""), "{msg}");
    let same_sink = format!("{issuers}[[publish]]\nurl = \"s3://b/p/\"\nissuers = [\"one\"]\n[[publish]]\nurl = \"s3://b/p\"\nissuers = [\"two\"]\n");
    let msg = error_of(&same_sink);
    assert!(
        msg.contains("publish[1].url = \"s3://b/p\": publish[0] already writes"),
        "{msg}"
    );
}
