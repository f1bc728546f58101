//! `[server]`: listeners, deadline and connection limits.

use std::time::Duration;

use crate::config::tests::fixtures::{error_of, load, with, ISSUER, MINIMAL};

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
