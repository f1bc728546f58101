//! Hostile and broken clients: precise 4xx or a closed connection, never the upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";

/// Sends raw bytes and reads the answer until the server closes, or until one whole
/// response has arrived. Returns the status (None: closed without an answer) and text.
async fn raw(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(IO_TIMEOUT, read)
        .await
        .expect("an answer or a close within the IO timeout");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

#[tokio::test]
async fn hostile_requests_get_a_precise_answer_and_never_reach_the_upstream() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder().issuer(Issuer::gitlab(&idp)).start().await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, "/oauth/discovery/keys").await;
    let seen = idp.total_hits();
    let big_header = format!(
        "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let many_headers = format!(
        "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n{}\r\n",
        (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    // (what, request, expected status; None means the connection is closed unanswered)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("absolute-form URI for another host", format!("GET http://evil.example/.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("CONNECT to another host", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(), Some(404)),
        ("CONNECT to the issuer host", format!("CONNECT {GITLAB}:443 HTTP/1.1\r\nHost: {GITLAB}:443\r\n\r\n").into_bytes(), Some(404)),
        ("TRACE on a document", format!("TRACE /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(405)),
        ("TRACE elsewhere", format!("TRACE / HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("unknown method on a document", format!("PURGE /oauth/discovery/keys HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(405)),
        ("Content-Length with Transfer-Encoding", format!("GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(), Some(400)),
        ("HTTP/0.9", b"GET /.well-known/openid-configuration\r\n\r\n".to_vec(), Some(400)),
        ("missing Host (HTTP/1.1)", b"GET /.well-known/openid-configuration HTTP/1.1\r\n\r\n".to_vec(), Some(400)),
        ("missing Host (HTTP/1.0)", b"GET /.well-known/openid-configuration HTTP/1.0\r\n\r\n".to_vec(), Some(400)),
        ("two Host headers", format!("GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\nHost: evil.example\r\n\r\n").into_bytes(), Some(400)),
        ("path traversal", format!("GET /oauth/../.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("percent-encoded traversal", format!("GET /oauth/%2e%2e/.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("percent-encoded document path", format!("GET /.well-known/openid%2Dconfiguration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("doubled slash", format!("GET //.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(404)),
        ("control bytes in the path", format!("GET /\x01\x7f HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n").into_bytes(), Some(400)),
        ("invalid bytes in Host", b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: gitlab\xff.example.com\r\n\r\n".to_vec(), Some(400)),
        ("body on GET", format!("GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {GITLAB}\r\nContent-Length: 5\r\n\r\nhello").into_bytes(), Some(400)),
        ("chunked body on GET", format!("GET /oauth/discovery/keys HTTP/1.1\r\nHost: {GITLAB}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes(), Some(400)),
        ("header over the size limit", big_header.into_bytes(), Some(431)),
        ("too many headers", many_headers.into_bytes(), Some(431)),
        ("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(), Some(400)),
    ];
    let mut failures = Vec::new();
    for (what, request, expected) in &cases {
        let (status, text) = raw(addr, request).await;
        eprintln!(
            "{what}: {}",
            status.map_or("closed without an answer".to_owned(), |s| s.to_string())
        );
        if status != *expected {
            failures.push(format!("{what}: expected {expected:?}, got {status:?}: {text:.300}"));
        }
        assert!(status != Some(200), "{what} got a 200");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(idp.total_hits(), seen, "a hostile request reached the upstream");

    // Framing that cannot be trusted closes the connection after the answer.
    let (_, text) = raw(addr, &cases[6].1).await;
    assert!(text.to_lowercase().contains("connection: close"), "{text}");
    // A CORS preflight is answered.
    let (status, text) = raw(
        addr,
        format!("OPTIONS /oauth/discovery/keys HTTP/1.1\r\nHost: {GITLAB}\r\nOrigin: https://x.example\r\nAccess-Control-Request-Method: GET\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status, Some(204), "{text}");
    assert!(text
        .to_lowercase()
        .contains("access-control-allow-methods: get, head, options"));
}

#[tokio::test]
async fn half_open_connections_are_closed_and_do_not_starve_clients() {
    let idp = gitlab_idp().await;
    let certs = Arc::new(TestCerts::for_hosts(&[GITLAB]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .header_timeout("1s")
        .tls_handshake_timeout("1s")
        // Room for 400 connections from one address: this is about timeouts, not limits.
        .max_connections(1000)
        .max_connections_per_address(1000)
        .tls(certs.clone())
        .start()
        .await;
    let plain = proxy.plain.unwrap();
    let https = proxy.https.unwrap();
    until_served(plain, GITLAB, "/oauth/discovery/keys").await;

    // 300 slowloris connections: half a request head, then nothing; plus connections that
    // send nothing at all, on both listeners (no TLS handshake, no HTTP/2 preface).
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(plain).await.unwrap();
        stream
            .write_all(format!("GET /oauth/discovery/keys HTTP/1.1\r\nHost: {GITLAB}\r\nX-Slow-{i}: ").as_bytes())
            .await
            .unwrap();
        idle.push(stream);
    }
    for _ in 0..50 {
        idle.push(TcpStream::connect(plain).await.unwrap());
        idle.push(TcpStream::connect(https).await.unwrap());
    }

    // A normal client is served promptly meanwhile, over both listeners.
    let sent = Instant::now();
    assert_eq!(
        get(plain, &Transport::Plain, GITLAB, "/oauth/discovery/keys")
            .await
            .status,
        StatusCode::OK
    );
    let tls = Transport::Tls {
        config: certs.client_config(&[b"h2"]),
        sni: GITLAB.to_owned(),
    };
    assert_eq!(
        get(https, &tls, GITLAB, "/oauth/discovery/keys").await.status,
        StatusCode::OK
    );
    let took = sent.elapsed();
    assert!(took < Duration::from_millis(500), "a normal client waited {took:?}");

    // Every idle connection is closed by the server within its timeout (1 s) + margin.
    for mut stream in idle {
        let mut buf = [0u8; 512];
        let closed = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 or similar before the close is fine
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the server closes a half-open connection");
    }
    let all_closed = opened.elapsed();
    eprintln!("400 idle connections closed after {all_closed:?} (timeouts 1s)");
    assert!(all_closed < Duration::from_secs(4), "closing took {all_closed:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let idp = gitlab_idp().await;
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .idle_timeout("1s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, GITLAB, "/oauth/discovery/keys").await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /oauth/discovery/keys HTTP/1.1\r\nHost: {GITLAB}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("an idle connection stayed open past 5 s"),
        }
    }
    assert!(got > 0, "the request was answered before the close");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed too early: {took:?}");
}
