//! End-to-end load benchmark: jwks-edge against a ceiling server (a minimal hyper + rustls
//! server returning the same bytes from memory), on loopback, scenario by scenario.
//!
//! `cargo bench --bench load [-- --duration 5s --connections 64 --server-cpu 0 --client-cpu 1]`
//!
//! Servers (the proxy, the ceiling) run as child processes pinned with `taskset` to
//! `--server-cpu`; this process, the load generator, pins itself to `--client-cpu`.
//! The generator is written here on hyper and rustls because the handshake scenarios need
//! session resumption switched on and off, which wrk, oha and h2load cannot all do.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jwks_edge::fake_idp::Fault;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::{keycloak_idp, BenchTls, HOST, JWKS, PATH};
const ROLE: &str = "JWKS_EDGE_BENCH_ROLE";

struct Args {
    duration: Duration,
    connections: usize,
    server_cpu: Option<usize>,
    client_cpu: Option<usize>,
    /// The proxy's `[log] access` setting.
    access_log: bool,
}

fn args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(5),
        connections: 64,
        server_cpu: None,
        client_cpu: None,
        access_log: true,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        args.server_cpu = Some(0);
        args.client_cpu = Some(1);
    }
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => args.duration = humantime::parse_duration(&it.next().unwrap()).unwrap(),
            "--connections" => args.connections = it.next().unwrap().parse().unwrap(),
            "--server-cpu" => args.server_cpu = Some(it.next().unwrap().parse().unwrap()),
            "--client-cpu" => args.client_cpu = Some(it.next().unwrap().parse().unwrap()),
            "--no-access-log" => args.access_log = false,
            "--no-pinning" => {
                args.server_cpu = None;
                args.client_cpu = None;
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("ceiling") {
        return ceiling();
    }
    let args = args();
    if let Some(cpu) = args.client_cpu {
        let pid = std::process::id().to_string();
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid])
            .stdout(Stdio::null())
            .status();
        if !pinned.is_ok_and(|s| s.success()) {
            eprintln!("taskset is not available: running unpinned");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

/// Kills a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_pinned(cpu: Option<usize>, program: &std::path::Path, args: &[&str], role: Option<&str>) -> ChildGuard {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(role) = role {
        command.env(ROLE, role);
    }
    ChildGuard(command.spawn().expect("the server starts"))
}

/// Reads `name=ADDR` announcements from a child's output (bounded to 30 s).
fn addresses(child: &mut ChildGuard, from_stderr: bool, wanted: &[&str]) -> Vec<SocketAddr> {
    let reader: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.0.stderr.take().unwrap())
    } else {
        Box::new(child.0.stdout.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    let mut found = vec![None; wanted.len()];
    while found.iter().any(Option::is_none) {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its listeners");
        for (i, name) in wanted.iter().enumerate() {
            let key = format!("listener=\"{name}\" listen=");
            let key2 = format!("{name}=");
            let value = line
                .split(&key)
                .nth(1)
                .or_else(|| line.strip_prefix(&key2))
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(addr) = value.and_then(|v| v.parse().ok()) {
                found[i] = Some(addr);
            }
        }
    }
    found.into_iter().map(Option::unwrap).collect()
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    KeepAlive,
    NewConnection,
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    mode: Mode,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(self.latencies[index] as u64)
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// Bound on one connection setup or one exchange: a stalled server ends the request as an
/// error instead of hanging the benchmark.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(target: &Target) -> Result<Sender, String> {
    tokio::time::timeout(IO_TIMEOUT, connect_unbounded(target))
        .await
        .map_err(|_| "connect timed out".to_owned())?
}

async fn connect_unbounded(target: &Target) -> Result<Sender, String> {
    let tcp = TcpStream::connect(target.addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
        Some(config) => {
            let name = ServerName::try_from(HOST).unwrap();
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Sender::H2(sender))
            } else {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Sender::H1(sender))
            }
        }
    }
}

async fn request(sender: &mut Sender) -> Result<usize, String> {
    tokio::time::timeout(IO_TIMEOUT, request_unbounded(sender))
        .await
        .map_err(|_| "request timed out".to_owned())?
}

async fn request_unbounded(sender: &mut Sender) -> Result<usize, String> {
    let response = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            let req = Request::get(PATH).header("host", HOST).body(Empty::new()).unwrap();
            s.send_request(req).await.map_err(|e| e.to_string())?
        }
        Sender::H2(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            let req = Request::get(format!("https://{HOST}{PATH}"))
                .body(Empty::new())
                .unwrap();
            s.send_request(req).await.map_err(|e| e.to_string())?
        }
    };
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(body.len())
}

/// Runs `connections` closed-loop clients against `target` for `duration`.
async fn load(target: &Target, connections: usize, duration: Duration) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let mut sender = None;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if sender.is_none() || target.mode == Mode::NewConnection {
                    match connect(&target).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            stats.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                match request(sender.as_mut().unwrap()).await {
                    Ok(_) => {
                        stats.requests += 1;
                        stats
                            .latencies
                            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => {
                        stats.errors += 1;
                        sender = None;
                    }
                }
            }
            stats
        });
    }
    let mut total = Stats::default();
    while let Some(done) = tasks.join_next().await {
        let stats = done.unwrap();
        total.requests += stats.requests;
        total.errors += stats.errors;
        total.latencies.extend(stats.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

fn client_config(ca: &rcgen::Certificate, alpn: &[u8], resumption: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

async fn run(args: Args) {
    let tls = BenchTls::new();
    let (ca, cert, key) = (&tls.ca, &tls.cert, &tls.key);
    // The fake IdP runs here, on the generator's core: it only sees refreshes.
    let idp = keycloak_idp().await;
    let backend = format!("{}/realms/bench", idp.base_url());
    let dir = tempfile::tempdir().unwrap();

    let refresh = Duration::from_secs(5);
    let config = format!(
        // Every client comes from 127.0.0.1 and the handshake scenarios churn connections
        // faster than closes are seen: room beyond the per-address default.
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_plain = \"127.0.0.1:0\"\n\
         max_connections = 4096\nmax_connections_per_address = 4096\n[server.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = {}\n[cache]\nrefresh = \"{}\"\nfetch_timeout = \"2s\"\n\
         [[issuer]]\npublic_url = \"https://{HOST}/realms/bench\"\nupstream = \"{backend}\"\n",
        args.access_log,
        humantime::format_duration(refresh)
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let proxy_bin = std::path::Path::new(env!("CARGO_BIN_EXE_jwks-edge"));
    let config_arg = config_path.display().to_string();
    let mut proxy = spawn_pinned(args.server_cpu, proxy_bin, &["serve", "--config", &config_arg], None);
    let proxy_addrs = addresses(&mut proxy, true, &["https", "plain"]);
    let me = std::env::current_exe().unwrap();
    let cert_arg = cert.display().to_string();
    let key_arg = key.display().to_string();
    let mut ceiling = spawn_pinned(args.server_cpu, &me, &[&cert_arg, &key_arg], Some("ceiling"));
    let ceiling_addrs = addresses(&mut ceiling, false, &["https", "plain"]);

    // Warm: wait until the proxy serves the key set.
    let warm_target = Target {
        addr: proxy_addrs[1],
        tls: None,
        mode: Mode::KeepAlive,
    };
    let started = Instant::now();
    loop {
        if let Ok(mut s) = connect(&warm_target).await {
            if request(&mut s).await.is_ok() {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the proxy never served the key set"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hits_before = idp.total_hits();
    let run_started = Instant::now();

    let h1 = client_config(ca, b"http/1.1", true);
    let h2 = client_config(ca, b"h2", true);
    let full = client_config(ca, b"http/1.1", false);
    let scenarios: Vec<(&str, usize, Option<Arc<rustls::ClientConfig>>, Mode)> = vec![
        ("HTTP/1.1 keep-alive", 1, None, Mode::KeepAlive),
        ("HTTPS keep-alive", 0, Some(h1.clone()), Mode::KeepAlive),
        ("HTTP/2 over TLS", 0, Some(h2), Mode::KeepAlive),
        ("new TLS connection, full handshake", 0, Some(full), Mode::NewConnection),
        ("new TLS connection, resumed", 0, Some(h1), Mode::NewConnection),
    ];
    println!(
        "\njwks-edge load benchmark: {} connections, {:?} per run, server cpu {:?}, client cpu {:?}, 2.9 KB key set, access log {}",
        args.connections,
        args.duration,
        args.server_cpu,
        args.client_cpu,
        if args.access_log { "on" } else { "off" }
    );
    println!("| scenario | server | req/s | p50 | p99 | max | errors | proxy ÷ ceiling |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut proxy_h1 = None;
    for (name, listener, tls, mode) in scenarios {
        let mut results = Vec::new();
        for (server, addrs) in [("ceiling", &ceiling_addrs), ("jwks-edge", &proxy_addrs)] {
            let target = Target {
                addr: addrs[listener],
                tls: tls.clone(),
                mode,
            };
            let stats = load(&target, args.connections, args.duration).await;
            results.push((server, stats));
        }
        let ratio = results[1].1.rps() / results[0].1.rps().max(1.0);
        for (server, stats) in &results {
            println!(
                "| {name} | {server} | {:.0} | {:?} | {:?} | {:?} | {} | {} |",
                stats.rps(),
                stats.percentile(0.5),
                stats.percentile(0.99),
                stats
                    .latencies
                    .last()
                    .map_or(Duration::ZERO, |m| Duration::from_micros(*m as u64)),
                stats.errors,
                if *server == "jwks-edge" {
                    format!("{ratio:.2}")
                } else {
                    String::new()
                }
            );
        }
        if name == "HTTP/1.1 keep-alive" {
            proxy_h1 = results.pop().map(|(_, s)| s);
        }
    }

    // The upstream hangs; the warm cache must keep the same latency.
    idp.set_fault(Fault::Hang);
    let target = Target {
        addr: proxy_addrs[1],
        tls: None,
        mode: Mode::KeepAlive,
    };
    let hanging = load(&target, args.connections, args.duration).await;
    let normal = proxy_h1.unwrap();
    let max = |s: &Stats| Duration::from_micros(*s.latencies.last().unwrap_or(&0) as u64);
    println!(
        "| HTTP/1.1 keep-alive, upstream hanging | jwks-edge | {:.0} | {:?} | {:?} | {:?} | {} | max latency {:?} → {:?} |",
        hanging.rps(),
        hanging.percentile(0.5),
        hanging.percentile(0.99),
        max(&hanging),
        hanging.errors,
        max(&normal),
        max(&hanging),
    );
    idp.set_fault(Fault::None);

    let elapsed = run_started.elapsed();
    let fetched = idp.total_hits() - hits_before;
    let expected = 2.0 * elapsed.as_secs_f64() / refresh.as_secs_f64();
    println!(
        "\nproxy RSS after the run: {:.1} MiB; ceiling RSS: {:.1} MiB",
        rss_kib(proxy.0.id()) as f64 / 1024.0,
        rss_kib(ceiling.0.id()) as f64 / 1024.0
    );
    println!(
        "upstream requests during {:.0} s of load: {fetched} (refresh {:?} implies about {expected:.0}, whatever the load)",
        elapsed.as_secs_f64(),
        refresh
    );
}

/// The ceiling: the same bytes, from memory, with no logic at all.
fn ceiling() {
    let mut argv = std::env::args().skip(1);
    let cert = argv.next().unwrap();
    let key = argv.next().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let key = jwks_edge::tls::load_certified_key(cert.as_ref(), key.as_ref()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(jwks_edge::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(jwks_edge::tls::resolver::CertResolver::new(
                jwks_edge::tls::resolver::CertSet::single(key),
            )));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("https={}", https.local_addr().unwrap());
        println!("plain={}", plain.local_addr().unwrap());
        let body = Bytes::from_static(JWKS.as_bytes());
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let serve = |listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>| {
            let builder = builder.clone();
            let body = body.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let builder = builder.clone();
                    let body = body.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let mut response = Response::new(Full::new(body.clone()));
                            let h = response.headers_mut();
                            h.insert("content-type", http::HeaderValue::from_static("application/json"));
                            h.insert("cache-control", http::HeaderValue::from_static("public, max-age=300"));
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        });
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
            }
        };
        tokio::join!(serve(https, Some(acceptor)), serve(plain, None));
    });
}
