//! Memory per connection: the RSS a real `jwks-edge serve` process (release build) adds
//! for each open connection, by kind — idle keep-alive and slow reader; HTTP/1.1 and
//! HTTP/2; plain and TLS — plus what the kernel holds in its send queues for them.
//!
//! `cargo bench --bench connections [-- --connections 2000 --repeats 3 --kinds h1-plain-slow,h2-tls-idle]`
//!
//! Each measurement starts a fresh server (freed memory stays in the allocator, so kinds
//! must not share a process), reads VmRSS from /proc/PID/status with no client, with half
//! the connections open and with all of them, and prints KiB per connection.
//!
//! - *idle*: one request answered, then nothing (a keep-alive client between requests).
//! - *slow*: the `slowhttptest -X` client: a 4 KiB receive buffer, many key set requests
//!   at once (32 pipelined on HTTP/1.1; 100 streams on HTTP/2, of which the server runs
//!   `max_concurrent_streams` at once; ~2.9 KB each), then 32 bytes read every 3 s, so
//!   the server's writes block with responses queued. Clients announce an Ethernet MSS.
//!
//! The server runs with timeouts far beyond the run, so nothing is closed while measured.

use std::future::Future as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

mod common;

use common::{keycloak_idp, BenchTls, HOST, PATH};
/// What the slow reader takes at a time, and how often.
const SLOW_BYTES: usize = 32;
const SLOW_EVERY: Duration = Duration::from_secs(3);
const SLOW_RCVBUF: usize = 4096;
/// The MSS a client on Ethernet announces (loopback's would be 64 KiB).
const ETHERNET_MSS: u32 = 1460;
const PIPELINED: usize = 32;
const STREAMS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kind {
    h2: bool,
    tls: bool,
    slow: bool,
}

impl Kind {
    fn name(self) -> String {
        format!(
            "{}-{}-{}",
            if self.h2 { "h2" } else { "h1" },
            if self.tls { "tls" } else { "plain" },
            if self.slow { "slow" } else { "idle" }
        )
    }

    fn all() -> Vec<Kind> {
        let mut kinds = Vec::new();
        for slow in [false, true] {
            for h2 in [false, true] {
                for tls in [false, true] {
                    kinds.push(Kind { h2, tls, slow });
                }
            }
        }
        kinds
    }
}

struct Args {
    connections: usize,
    repeats: usize,
    kinds: Vec<Kind>,
    /// Extra `[server]` lines, to measure another configuration.
    server: Vec<String>,
}

fn args() -> Args {
    let mut args = Args {
        connections: 2000,
        repeats: 3,
        kinds: Kind::all(),
        server: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--connections" => args.connections = it.next().unwrap().parse().unwrap(),
            "--repeats" => args.repeats = it.next().unwrap().parse().unwrap(),
            "--server" => args.server.push(it.next().unwrap()),
            "--kinds" => {
                let wanted: Vec<String> = it.next().unwrap().split(',').map(str::to_owned).collect();
                args.kinds.retain(|k| wanted.contains(&k.name()));
                assert!(
                    !args.kinds.is_empty(),
                    "no such kind; kinds are h1|h2-plain|tls-idle|slow"
                );
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() {
    let args = args();
    // Every connection is a descriptor here too.
    let (limit, _) = jwks_edge::edge::fd_limit::raise();
    if limit.soft.is_some_and(|n| n < args.connections as u64 + 256) {
        eprintln!(
            "RLIMIT_NOFILE {:?} is too low for {} connections",
            limit.soft, args.connections
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

/// Kills the server when dropped.
struct Server {
    child: Child,
    plain: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(config: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
        .args(["serve", "--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Keep draining after the listeners are known, so the server never blocks.
            let _ = tx.send(line);
        }
    });
    let mut found = std::collections::HashMap::new();
    while found.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its listeners");
        if let Some(rest) = line.split("accepting connections listener=\"").nth(1) {
            let name = rest.split('"').next().unwrap().to_owned();
            let addr: SocketAddr = rest
                .split("listen=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            found.insert(name, addr);
        }
    }
    Server {
        child,
        plain: found["plain"],
        https: found["https"],
        admin: found["admin"],
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes in the send queues of the server's sockets on `port` (/proc/net/tcp `tx_queue`:
/// data not yet acknowledged). The kernel's own overhead per buffer comes on top.
fn send_queue_bytes(port: u16) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(queues)) = (fields.get(1), fields.get(4)) else {
                continue;
            };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                let tx = queues.split(':').next().and_then(|q| u64::from_str_radix(q, 16).ok());
                total += tx.unwrap_or(0);
            }
        }
    }
    total
}

/// Kernel memory of all TCP sockets on the machine, in KiB (/proc/net/sockstat `mem`,
/// in pages): what sockets charge to a container's memory limit.
fn tcp_kernel_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// A stream whose reads can be throttled to `SLOW_BYTES` every `SLOW_EVERY`, below TLS.
struct SlowRead {
    inner: TcpStream,
    slow: Arc<AtomicBool>,
    next: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SlowRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.slow.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let next = this
            .next
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SLOW_EVERY)));
        if next.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let mut small = [0u8; SLOW_BYTES];
        let mut small_buf = ReadBuf::new(&mut small[..SLOW_BYTES.min(buf.remaining())]);
        match Pin::new(&mut this.inner).poll_read(cx, &mut small_buf) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(small_buf.filled());
                next.as_mut().reset(tokio::time::Instant::now() + SLOW_EVERY);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for SlowRead {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Connects (with a small receive buffer for slow readers) and does TLS when asked, the
/// reads unthrottled until the returned switch is set.
async fn connect(kind: Kind, addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> (Box<dyn Io>, Arc<AtomicBool>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // The server sends segments of an Ethernet path, as it would to a real client.
    socket.set_tcp_mss(ETHERNET_MSS).unwrap();
    if kind.slow {
        socket.set_recv_buffer_size(SLOW_RCVBUF).unwrap();
    }
    socket.set_nonblocking(true).unwrap();
    let socket = TcpSocket::from_std_stream(socket.into());
    let tcp = socket.connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let slow = Arc::new(AtomicBool::new(false));
    let io = SlowRead {
        inner: tcp,
        slow: slow.clone(),
        next: None,
    };
    if kind.tls {
        let name = ServerName::try_from(HOST).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, io)
            .await
            .expect("TLS handshake");
        (Box::new(stream), slow)
    } else {
        (Box::new(io), slow)
    }
}

fn h1_request() -> String {
    format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

/// Reads one whole HTTP/1.1 response (Content-Length framed).
async fn read_response(io: &mut Box<dyn Io>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = io.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}

/// Opens one connection of `kind` and leaves it in its state, held by tasks in `held`.
async fn open(kind: Kind, server: &Server, tls: &Arc<rustls::ClientConfig>, held: &mut JoinSet<()>) {
    let addr = if kind.tls { server.https } else { server.plain };
    let (mut io, slow) = connect(kind, addr, tls).await;
    if !kind.h2 {
        if kind.slow {
            let pipelined = h1_request().repeat(PIPELINED);
            io.write_all(pipelined.as_bytes()).await.unwrap();
            slow.store(true, Ordering::Relaxed);
            held.spawn(async move {
                let mut sink = [0u8; 64];
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        } else {
            io.write_all(h1_request().as_bytes()).await.unwrap();
            read_response(&mut io).await;
            held.spawn(async move {
                let mut sink = [0u8; 64];
                let _ = io.read(&mut sink).await;
            });
        }
        return;
    }
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    // Windows large enough that the server is held up by TCP, not by flow control.
    builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20);
    let (mut sender, conn) = builder.handshake(TokioIo::new(io)).await.expect("h2 handshake");
    held.spawn(async move {
        let _ = conn.await;
    });
    let request = || {
        Request::get(format!("https://{HOST}{PATH}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = sender.send_request(request()).await.expect("h2 request");
    response.into_body().collect().await.expect("h2 body");
    if kind.slow {
        slow.store(true, Ordering::Relaxed);
        for _ in 0..STREAMS {
            let sent = sender.send_request(request());
            held.spawn(async move {
                if let Ok(response) = sent.await {
                    let _ = response.into_body().collect().await;
                }
            });
        }
    } else {
        held.spawn(async move {
            let _keep = sender;
            std::future::pending::<()>().await;
        });
    }
}

/// The server's open connections on `listener`, from its metrics.
async fn open_connections(server: &Server, listener: &str) -> usize {
    let Ok(tcp) = TcpStream::connect(server.admin).await else {
        return 0;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else {
        return 0;
    };
    tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let Ok(response) = sender.send_request(request).await else {
        return 0;
    };
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let wanted = format!("jwks_edge_open_connections{{listener=\"{listener}\"}} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// RSS once it has settled: two samples 500 ms apart within 0.5 % (at most 15 s).
async fn settled_rss(pid: u32) -> u64 {
    let started = Instant::now();
    let mut last = rss_kib(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) * 200 <= last || started.elapsed() > Duration::from_secs(15) {
            return now.max(last);
        }
        last = now;
    }
}

struct Sample {
    /// KiB per connection over the first half, and over all of them.
    half: f64,
    all: f64,
    /// Send-queue KiB per connection, with all open.
    queued: f64,
    /// Kernel TCP memory KiB per connection (both ends; the client's is its 4 KiB buffer).
    kernel: f64,
    baseline_kib: u64,
}

async fn measure(kind: Kind, connections: usize, config: &std::path::Path, tls: &Arc<rustls::ClientConfig>) -> Sample {
    let server = start_server(config);
    let pid = server.child.id();
    let listener = if kind.tls { "https" } else { "plain" };
    // Warm: the key set is served, every lazily made part of the server exists.
    let started = Instant::now();
    while !serves(&server).await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the proxy never served the key set"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut warm = JoinSet::new();
    open(Kind { slow: false, ..kind }, &server, tls, &mut warm).await;
    drop(warm);
    let baseline = settled_rss(pid).await;
    let kernel_before = tcp_kernel_kib();
    let mut held = JoinSet::new();
    let mut rss = Vec::new();
    let half = connections / 2;
    let mut opened = 0;
    for target in [half, connections] {
        while opened < target {
            open(kind, &server, tls, &mut held).await;
            opened += 1;
        }
        let waited = Instant::now();
        while open_connections(&server, listener).await < target {
            assert!(waited.elapsed() < Duration::from_secs(60), "connections not seen open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rss.push(settled_rss(pid).await);
    }
    let port = if kind.tls {
        server.https.port()
    } else {
        server.plain.port()
    };
    let queued = send_queue_bytes(port) as f64 / 1024.0 / connections as f64;
    let kernel = tcp_kernel_kib().saturating_sub(kernel_before) as f64 / connections as f64;
    held.abort_all();
    Sample {
        half: rss[0].saturating_sub(baseline) as f64 / half as f64,
        all: rss[1].saturating_sub(baseline) as f64 / connections as f64,
        queued,
        kernel,
        baseline_kib: baseline,
    }
}

/// Whether the plain listener answers the key set with a 200.
async fn serves(server: &Server) -> bool {
    let Ok(mut tcp) = TcpStream::connect(server.plain).await else {
        return false;
    };
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && &head[9..12] == b"200"
}

async fn run(args: Args) {
    let tls = BenchTls::new();
    let (ca, cert, key) = (&tls.ca, &tls.cert, &tls.key);
    let idp = keycloak_idp().await;
    let backend = format!("{}/realms/bench", idp.base_url());
    let dir = tempfile::tempdir().unwrap();

    let max = args.connections + 100;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_plain = \"127.0.0.1:0\"\n\
         max_connections = {max}\nmax_connections_per_address = {max}\n\
         header_timeout = \"10m\"\nidle_timeout = \"10m\"\nsend_timeout = \"10m\"\n{}\n\
         [server.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n\
         [[issuer]]\npublic_url = \"https://{HOST}/realms/bench\"\nupstream = \"{backend}\"\n",
        args.server.join("\n")
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client = |alpn: &[u8]| {
        let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    };
    let h1 = client(b"http/1.1");
    let h2 = client(b"h2");

    println!(
        "\njwks-edge memory per connection: {} connections per kind, {} runs, a fresh `serve` each{}; \
         slow = {PIPELINED} pipelined (HTTP/1.1) or {STREAMS} streams, as many as the server admits (HTTP/2), of a 2.9 KB key set, \
         {SLOW_RCVBUF} B receive buffer, {SLOW_BYTES} B read every {SLOW_EVERY:?}",
        args.connections,
        args.repeats,
        if args.server.is_empty() { String::new() } else { format!(" with {}", args.server.join(", ")) }
    );
    println!(
        "| kind | RSS KiB/conn (median) | runs (first half / all) | send queue KiB/conn | kernel TCP KiB/conn (both ends) | baseline RSS MiB |"
    );
    println!("|---|---|---|---|---|---|");
    for kind in args.kinds {
        let tls = if kind.h2 { &h2 } else { &h1 };
        let mut samples = Vec::new();
        for _ in 0..args.repeats {
            samples.push(measure(kind, args.connections, &config_path, tls).await);
        }
        let mut all: Vec<f64> = samples.iter().map(|s| s.all).collect();
        all.sort_by(f64::total_cmp);
        let runs = samples
            .iter()
            .map(|s| format!("{:.1}/{:.1}", s.half, s.all))
            .collect::<Vec<_>>()
            .join(", ");
        let queued = samples.iter().map(|s| s.queued).sum::<f64>() / samples.len() as f64;
        let kernel = samples.iter().map(|s| s.kernel).sum::<f64>() / samples.len() as f64;
        let baseline = samples.iter().map(|s| s.baseline_kib).max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "| {} | {:.1} | {runs} | {queued:.1} | {kernel:.1} | {baseline:.1} |",
            kind.name(),
            all[all.len() / 2]
        );
    }
}
