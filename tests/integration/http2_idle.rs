//! Idle HTTP/2 connections get a GOAWAY: spoken as raw frames, so the test sees exactly
//! what the server sends and when.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::support::*;

use crate::connections::*;

/// HTTP/2 frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;

async fn write_frame(io: &mut (impl AsyncWrite + Unpin), kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    io.write_all(&frame).await.unwrap();
}

/// The next frame, or `None` when the server closed the connection.
async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; length];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// A GET in HPACK without Huffman coding: static-table method and scheme, literal path
/// and authority.
fn hpack_get(scheme_https: bool, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, if scheme_https { 0x87 } else { 0x86 }];
    for (index, value) in [(0x44u8, path), (0x41, HOST)] {
        block.push(index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Speaks raw HTTP/2 on `io`: the preface, optionally one GET, then nothing. Returns how
/// long after the last response frame (or after the preface) the GOAWAY came, and its
/// error code; then checks that the server closes the connection.
async fn idle_until_goaway(mut io: impl AsyncRead + AsyncWrite + Unpin, https: bool, request: bool) -> (Duration, u32) {
    io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    write_frame(&mut io, SETTINGS, 0, 0, &[]).await;
    if request {
        write_frame(&mut io, HEADERS, 0x4 | END_STREAM, 1, &hpack_get(https, KEYS)).await;
    }
    let mut quiet_since = Instant::now();
    let mut answered = !request;
    let goaway = async {
        loop {
            let (kind, flags, stream, payload) = read_frame(&mut io).await.expect("a GOAWAY before the close");
            match kind {
                SETTINGS if flags & 0x1 == 0 => write_frame(&mut io, SETTINGS, 0x1, 0, &[]).await,
                DATA | HEADERS if stream == 1 && flags & END_STREAM != 0 => {
                    answered = true;
                    quiet_since = Instant::now();
                }
                GOAWAY => {
                    assert!(answered, "GOAWAY before the response was complete");
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    return (quiet_since.elapsed(), code);
                }
                _ => {}
            }
        }
    };
    let result = timeout(Duration::from_secs(8), goaway)
        .await
        .expect("a GOAWAY within 8 s");
    // After the GOAWAY (and the PING hyper sends with it, left unanswered) the server
    // closes the connection within its grace.
    let closed = async { while read_frame(&mut io).await.is_some() {} };
    timeout(Duration::from_secs(5), closed)
        .await
        .expect("the server closes the connection after its GOAWAY");
    result
}

#[tokio::test]
async fn idle_http2_connections_get_a_goaway() {
    let (_idp, issuer) = keycloak().await;
    let certs = Arc::new(TestCerts::for_hosts(&[HOST]));
    let proxy = Proxy::builder()
        .issuer(issuer)
        .header_timeout("1s")
        .idle_timeout("1s")
        .tls(certs.clone())
        .start()
        .await;
    let plain = proxy.plain.unwrap();
    until_served(plain, HOST, KEYS).await;

    // Prior-knowledge HTTP/2 without TLS: one request, then idle.
    let (idle, code) = idle_until_goaway(TcpStream::connect(plain).await.unwrap(), false, true).await;
    assert_eq!(code, 0, "NO_ERROR");
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(4),
        "GOAWAY after {idle:?}"
    );

    // HTTP/2 by ALPN over TLS: the same.
    let connector = tokio_rustls::TlsConnector::from(certs.client_config(&[b"h2"]));
    let tcp = TcpStream::connect(proxy.https.unwrap()).await.unwrap();
    let tls = connector
        .connect(rustls_pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (idle, code) = idle_until_goaway(tls, true, true).await;
    assert_eq!(code, 0);
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(4),
        "GOAWAY after {idle:?}"
    );

    // No request at all within header_timeout: a GOAWAY too, not a bare close.
    let (idle, _) = idle_until_goaway(TcpStream::connect(plain).await.unwrap(), false, false).await;
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(4),
        "GOAWAY after {idle:?}"
    );
}
