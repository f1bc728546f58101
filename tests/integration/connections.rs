//! Connection budgets and timeouts: per-address limits, memory under slow readers,
//! keep-alive and HTTP/2 idle closes, the send timeout, the open-file limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

use crate::support::*;

pub(crate) const HOST: &str = "auth.example.com";
pub(crate) const KEYS: &str = "/realms/prod/protocol/openid-connect/certs";
pub(crate) const FIRST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
pub(crate) const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The README's planning figures: a baseline and a worst-case cost per connection.
pub(crate) const BASELINE_BUDGET_KIB: u64 = 16 * 1024;

pub(crate) async fn keycloak() -> (jwks_edge::fake_idp::FakeIdp, Issuer) {
    let idp = keycloak_idp("prod").await;
    let issuer = Issuer::keycloak(&idp, "prod");
    (idp, issuer)
}

/// A TCP connection from `from` with a 4 KiB receive buffer.
pub(crate) async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    timeout(IO_TIMEOUT, socket.connect(addr)).await.unwrap().unwrap()
}

/// `count` pipelined key set requests: far more answer than the socket buffers hold.
pub(crate) fn pipelined(count: usize) -> String {
    format!("GET {KEYS} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").repeat(count)
}

/// Whether the server answers on `stream` (bytes arrive) rather than closing it.
pub(crate) async fn answered(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 32];
    let read = timeout(IO_TIMEOUT, stream.read(&mut buf))
        .await
        .expect("an answer or a close within the IO timeout");
    matches!(read, Ok(n) if n > 0)
}

/// One request with `Connection: close` from `from`: the status.
pub(crate) async fn get_from(from: IpAddr, addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = connect_from(from, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = Vec::new();
    timeout(IO_TIMEOUT, stream.read_to_end(&mut text)).await.ok()?.ok()?;
    String::from_utf8_lossy(&text).get(9..12)?.parse().ok()
}

/// One metric's value from the admin listener's /metrics.
pub(crate) async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let reply = get(admin, &Transport::Plain, "localhost", "/metrics").await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Bytes waiting in the send queues of the sockets on local `port` (/proc/net/tcp
/// `tx_queue`), that is the server's side of its connections.
pub(crate) fn send_queue_bytes(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let tx = u64::from_str_radix(fields.get(4)?.split(':').next()?, 16).ok()?;
            (local == port).then_some(tx)
        })
        .sum()
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
pub(crate) async fn slow_readers_from_one_address_are_capped_and_another_address_is_served() {
    let (_idp, issuer) = keycloak().await;
    let config = format!(
        "[server]\nlisten_plain = \"127.0.0.1:0\"\nmax_connections = 400\nmax_connections_per_address = 150\n\
         send_timeout = \"60s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n{issuer}"
    );
    let serve = Serve::start(&config, 2);
    let (addr, admin) = (serve.addr("plain"), serve.addr("admin"));
    until_served(addr, HOST, KEYS).await;
    let baseline = rss_kib(serve.pid());

    // 200 slow readers from 127.0.0.1, each with 64 key sets (~190 KB) asked for at once
    // and a 4 KiB receive buffer: 150 are admitted and stall, 50 are closed at once.
    let mut readers = Vec::new();
    for _ in 0..200 {
        let mut stream = connect_from(FIRST, addr).await;
        let _ = stream.write_all(pipelined(64).as_bytes()).await;
        readers.push(stream);
    }
    let mut admitted = 0;
    for stream in &mut readers {
        admitted += usize::from(answered(stream).await);
    }
    assert_eq!(admitted, 150, "the per-address limit admits exactly 150");
    eventually(IO_TIMEOUT, "150 open connections", async || {
        metric(admin, "jwks_edge_open_connections{listener=\"plain\"}").await == 150.0
    })
    .await;

    // Another address is served at once, within the server deadline (2 s).
    let started = Instant::now();
    assert_eq!(get_from(SECOND, addr, KEYS).await, Some(200));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "127.0.0.2 waited {took:?}");
    // A further connection from the first address is closed at once.
    let started = Instant::now();
    let mut more = connect_from(FIRST, addr).await;
    let _ = more.write_all(pipelined(1).as_bytes()).await;
    assert!(!answered(&mut more).await, "a connection beyond the limit is refused");
    assert!(started.elapsed() < Duration::from_secs(2));
    let refused = metric(
        admin,
        "jwks_edge_connections_closed_total{listener=\"plain\",reason=\"per_address\"}",
    )
    .await;
    assert_eq!(refused, 51.0);

    // Memory stays within the documented budget: baseline plus the planning figure per
    // admitted connection (README, "Connection and memory budget").
    tokio::time::sleep(Duration::from_millis(500)).await; // let the writes stall
    let rss = rss_kib(serve.pid());
    let per_connection = (jwks_edge::config::limits::CONNECTION_COST_BYTES / 1024) as u64;
    eprintln!(
        "RSS {baseline} KiB -> {rss} KiB with 150 slow readers: {:.1} KiB each",
        rss.saturating_sub(baseline) as f64 / 150.0
    );
    assert!(rss < BASELINE_BUDGET_KIB + 150 * per_connection, "RSS {rss} KiB");
    assert!(rss.saturating_sub(baseline) < 150 * per_connection);
    // And so does the kernel's: the send queues are clamped to server.send_buffer_bytes
    // (16 KiB, which the kernel doubles) instead of growing with autotuning.
    let queued = send_queue_bytes(addr.port());
    eprintln!(
        "kernel send queues: {:.1} KiB per slow reader",
        queued as f64 / 1024.0 / 150.0
    );
    assert!(queued < 150 * 2 * 16 * 1024, "{queued} bytes queued");
    drop(readers);
}

#[tokio::test]
pub(crate) async fn an_http1_keep_alive_connection_lives_until_idle_timeout_not_header_timeout() {
    let (_idp, issuer) = keycloak().await;
    let proxy = Proxy::builder()
        .issuer(issuer)
        .header_timeout("1s")
        .idle_timeout("3s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, HOST, KEYS).await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(pipelined(1).as_bytes()).await.unwrap();
    read_response(&mut stream).await;
    // Idle for 2 s, twice header_timeout: the connection is still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(pipelined(1).as_bytes()).await.unwrap();
    read_response(&mut stream).await;
    let answered_at = Instant::now();
    // Then idle again: closed at idle_timeout.
    let mut buf = [0u8; 64];
    let read = timeout(Duration::from_secs(8), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed, with nothing sent");
    let idle = answered_at.elapsed();
    assert!(
        idle >= Duration::from_millis(2700),
        "closed after {idle:?}, before idle_timeout"
    );
    assert!(idle < Duration::from_secs(5), "closed after {idle:?}");

    // A head started on an idle connection must still be complete within header_timeout
    // of its first byte: a half head is closed at ~1 s, not at idle_timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(pipelined(1).as_bytes()).await.unwrap();
    read_response(&mut stream).await;
    stream.write_all(b"GET /realms/prod/protocol/open").await.unwrap();
    let started = Instant::now();
    let read = timeout(Duration::from_secs(8), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed without an answer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "a half head was closed after {took:?} (header_timeout 1 s, idle_timeout 3 s)"
    );
}

/// Reads one whole `Content-Length` response from `stream`.
pub(crate) async fn read_response(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the response was complete");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap();
                if buf.len() >= end + 4 + length {
                    return;
                }
            }
        }
    };
    timeout(IO_TIMEOUT, read)
        .await
        .expect("a response within the IO timeout");
}

#[tokio::test]
pub(crate) async fn the_send_timeout_closes_a_connection_whose_client_never_reads() {
    let (_idp, issuer) = keycloak().await;
    let proxy = Proxy::builder()
        .issuer(issuer)
        .send_timeout("1s")
        .idle_timeout("30s")
        .start()
        .await;
    let addr = proxy.plain.unwrap();
    until_served(addr, HOST, KEYS).await;
    let open = "jwks_edge_open_connections{listener=\"plain\"}";
    let closed = "jwks_edge_connections_closed_total{listener=\"plain\",reason=\"send_timeout\"}";
    eventually(IO_TIMEOUT, "no open connection", async || {
        metric(proxy.admin, open).await == 0.0
    })
    .await;

    let mut stream = connect_from(FIRST, addr).await;
    stream.write_all(pipelined(64).as_bytes()).await.unwrap();
    let sent = Instant::now();
    eventually(IO_TIMEOUT, "the connection to open", async || {
        metric(proxy.admin, open).await == 1.0
    })
    .await;
    eventually(Duration::from_secs(6), "the send timeout to close it", async || {
        metric(proxy.admin, open).await == 0.0
    })
    .await;
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the send timeout"
    );
    assert_eq!(metric(proxy.admin, closed).await, 1.0);
    // What was sent before is still readable, and then the connection is closed.
    let mut sink = Vec::new();
    let _ = timeout(IO_TIMEOUT, stream.read_to_end(&mut sink))
        .await
        .expect("closed");
    assert!(!sink.is_empty() && sink.len() < 64 * 2958, "{} bytes", sink.len());
}

#[tokio::test]
pub(crate) async fn serve_refuses_to_start_when_the_open_file_limit_cannot_hold_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten_plain = \"127.0.0.1:0\"\nmax_connections = 1000\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[issuer]]\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    // `ulimit -n` sets the soft and the hard limit: 256 cannot be raised.
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" serve --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_jwks-edge"))
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for part in [
        "RLIMIT_NOFILE) is 256 (hard limit 256)",
        "server.max_connections = 1000 on 1 public listener",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }

    // A soft limit below the need is raised to the hard limit, and serve starts.
    std::fs::write(
        &config,
        "[server]\nlisten_plain = \"127.0.0.1:0\"\nmax_connections = 300\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[issuer]]\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut child = ChildProcess::spawn(
        std::process::Command::new("sh")
            .args([
                "-c",
                "ulimit -Sn 256 && ulimit -Hn 1024 && exec \"$0\" serve --config \"$1\"",
            ])
            .arg(env!("CARGO_BIN_EXE_jwks-edge"))
            .arg(&config)
            .stderr(std::process::Stdio::null()),
    );
    let pid = child.id();
    Wait::up_to(IO_TIMEOUT)
        .every(Duration::from_millis(50))
        .until("the soft limit to be raised to the hard limit", async || {
            let soft = std::fs::read_to_string(format!("/proc/{pid}/limits"))
                .ok()
                .and_then(|l| {
                    l.lines()
                        .find(|l| l.starts_with("Max open files"))
                        .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<u64>().ok()))
                });
            assert!(child.try_wait().unwrap().is_none(), "serve exited");
            if soft == Some(1024) {
                Ok(())
            } else {
                Err(format!("soft limit {soft:?}"))
            }
        })
        .await;
}

#[tokio::test]
pub(crate) async fn a_client_is_served_while_others_hold_the_address_limit() {
    // The same limit on the HTTPS listener, counted per listener: TLS clients from one
    // address beyond it are closed before the handshake.
    let (_idp, issuer) = keycloak().await;
    let certs = Arc::new(TestCerts::for_hosts(&[HOST]));
    let proxy = Proxy::builder()
        .issuer(issuer)
        .max_connections_per_address(3)
        .tls(certs.clone())
        .start()
        .await;
    let https = proxy.https.unwrap();
    until_served(proxy.plain.unwrap(), HOST, KEYS).await;
    let transport = Transport::Tls {
        config: certs.client_config(&[b"http/1.1"]),
        sni: HOST.to_owned(),
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = Conn::open(https, &transport).await;
        assert_eq!(conn.get(HOST, KEYS).await.status, StatusCode::OK);
        held.push(conn);
    }
    let tcp = TcpStream::connect(https).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(certs.client_config(&[b"http/1.1"]));
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let handshake = timeout(IO_TIMEOUT, connector.connect(name, tcp)).await.unwrap();
    assert!(handshake.is_err(), "a fourth connection from 127.0.0.1 is refused");
    drop(held.pop());
    eventually(IO_TIMEOUT, "a slot to come back", async || {
        let tcp = TcpStream::connect(https).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(certs.client_config(&[b"http/1.1"]));
        let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
        timeout(IO_TIMEOUT, connector.connect(name, tcp)).await.unwrap().is_ok()
    })
    .await;
}
