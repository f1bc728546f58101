//! `[cache]`: freshness periods, document size and state directory.

use std::time::Duration;

use crate::config::tests::fixtures::{error_of, load, with, ISSUER, MINIMAL};

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
fn max_fetches_per_upstream_defaults_to_8_and_refuses_0() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.cache.max_fetches_per_upstream, 8);
    let config = load(&with("", "max_fetches_per_upstream = 2", ISSUER)).unwrap();
    assert_eq!(config.cache.max_fetches_per_upstream, 2);
    let rendered = config.to_string();
    assert!(rendered.contains("max_fetches_per_upstream = 2"), "{rendered}");
    assert_eq!(load(&rendered).unwrap().to_string(), rendered);
    for (line, expected) in [
        (
            "max_fetches_per_upstream = 0",
            "cache.max_fetches_per_upstream = \"0\": must be between 1 and 1024",
        ),
        (
            "max_fetches_per_upstream = -3",
            "cache.max_fetches_per_upstream = \"-3\": must be between 1 and 1024",
        ),
        (
            "max_fetches_per_upstream = 5000",
            "cache.max_fetches_per_upstream = \"5000\"",
        ),
        ("max_fetches_per_upstream = \"8\"", "invalid type"),
    ] {
        let msg = error_of(&with("", line, ISSUER));
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
}
