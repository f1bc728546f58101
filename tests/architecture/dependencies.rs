//! The dependency tree keeps one TLS and crypto stack: rustls on ring. object_store's
//! cloud features would bring reqwest and aws-lc-rs (a second crypto library, built from
//! C); the project talks to the stores over its own client instead (`src/publish/transport.rs`).

/// Packages `Cargo.lock` must not hold, and why.
const REFUSED: &[(&str, &str)] = &[
    ("aws-lc-rs", "a second crypto library; ring signs everything"),
    ("aws-lc-sys", "aws-lc-rs's C build"),
    ("reqwest", "a second HTTP client; hyper-util serves object_store too"),
    ("openssl", "a second TLS stack; rustls is the only one"),
    ("openssl-sys", "a second TLS stack; rustls is the only one"),
    ("native-tls", "a second TLS stack; rustls is the only one"),
];

#[test]
fn the_lock_file_holds_one_tls_and_crypto_stack() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let names: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(
        names.contains(&"ring") && names.contains(&"object_store"),
        "read the lock file"
    );
    let found: Vec<String> = REFUSED
        .iter()
        .filter(|(name, _)| names.contains(name))
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    assert!(
        found.is_empty(),
        "Cargo.lock holds refused packages:\n{}",
        found.join("\n")
    );
}
