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

use std::sync::Arc;
use std::time::Duration;

#[path = "../common/mod.rs"]
mod common;

mod client;
mod measure;
mod memory;
mod server;

use common::{keycloak_idp, BenchTls, HOST};

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
            samples.push(measure::measure(kind, args.connections, &config_path, tls).await);
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
