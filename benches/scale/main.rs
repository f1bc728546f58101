//! Cost as the issuer count grows: for each fleet size, a fresh `jwks-edge serve` (release
//! build) with N Keycloak-shaped issuers on fake IdPs in this process, and one table row:
//! RSS when ready and after load, time to ready, `/metrics` and `/readyz` size and scrape
//! time, req/s spread over every host, and upstream requests per minute.
//!
//! `cargo bench --bench scale [-- --issuers 1,100,1000,10000 --idps 1 --duration 5s --connections 32 --refresh 10s]`
//! `cargo bench --bench scale -- --issuers 1000 --fleet-only /tmp/c.toml --duration 120s`: only
//! the fake IdPs and the config, for a proxy started by hand (under heaptrack, say).
//!
//! Each size gets its own process: memory freed by a bigger fleet would stay in the
//! allocator and blur the next row.

use std::time::{Duration, Instant};

#[path = "../common/child.rs"]
mod child;
// Only the key set and `rss` are used here; the TLS and single-issuer helpers are the
// other benches'.
#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;

mod fleet;
mod http;

use child::Proxy;
use common::rss::rss_kib;
use fleet::Fleet;

struct Args {
    issuers: Vec<usize>,
    idps: usize,
    duration: Duration,
    connections: usize,
    /// The proxy's `[cache] refresh`; upstream requests are counted over two of these.
    refresh: Duration,
    /// How long a fleet may take to become ready before its row is given up.
    ready_within: Duration,
    /// `--fleet-only PATH`: start the fake IdPs for the first size, write the proxy config
    /// to PATH and keep serving for `--duration`, for a proxy run by hand (under heaptrack).
    fleet_only: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        issuers: vec![1, 100, 1000],
        idps: 1,
        duration: Duration::from_secs(5),
        connections: 32,
        refresh: Duration::from_secs(10),
        ready_within: Duration::from_secs(180),
        fleet_only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--issuers" => {
                args.issuers = value("--issuers")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--issuers: a comma-separated list of counts"))
                    .filter(|n| *n > 0)
                    .collect()
            }
            "--idps" => args.idps = value("--idps").parse().expect("--idps: a count"),
            "--duration" => {
                args.duration = humantime::parse_duration(&value("--duration")).expect("--duration: such as 5s")
            }
            "--connections" => args.connections = value("--connections").parse().expect("--connections: a count"),
            "--refresh" => {
                args.refresh = humantime::parse_duration(&value("--refresh")).expect("--refresh: such as 10s")
            }
            "--ready-within" => {
                args.ready_within =
                    humantime::parse_duration(&value("--ready-within")).expect("--ready-within: such as 180s")
            }
            "--fleet-only" => args.fleet_only = Some(value("--fleet-only").into()),
            _ => {} // cargo bench passes --bench
        }
    }
    args.idps = args.idps.max(1);
    args.connections = args.connections.max(1);
    args
}

struct Row {
    issuers: usize,
    rss_ready_kib: u64,
    rss_loaded_kib: u64,
    ready_after: Duration,
    metrics_bytes: usize,
    metrics_time: Duration,
    readyz_bytes: usize,
    readyz_time: Duration,
    load: http::Load,
    startup_fetches: u64,
    upstream_per_minute: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Polls the admin `/readyz` until it answers 200 with every document fresh.
async fn wait_ready(admin: std::net::SocketAddr, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < within {
        match http::get(admin, "localhost", "/readyz").await {
            Ok((200, body, _)) => {
                let summary: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if summary["status"] == "fresh" {
                    return Ok(started.elapsed());
                }
                last = format!("200, status {}", summary["status"]);
            }
            Ok((status, _, _)) => last = format!("{status}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("not ready within {within:?} (last /readyz: {last})"))
}

async fn measure(n: usize, args: &Args) -> Result<Row, String> {
    let fleet = Fleet::start(n, args.idps).await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, fleet.config(args.refresh)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let proxy = Proxy::start(&config, &["plain", "admin"], Duration::from_secs(60))?;
    let (plain, admin) = (proxy.listeners["plain"], proxy.listeners["admin"]);
    let waited = wait_ready(admin, args.ready_within).await?;
    // The spawn and the announcement come before the first poll.
    let ready_after = started.elapsed().max(waited);
    let rss_ready_kib = rss_kib(proxy.pid());
    let hits_ready = fleet.upstream_hits();
    let window = Instant::now();

    let (_, metrics, metrics_time) = http::get(admin, "localhost", "/metrics")
        .await
        .map_err(|e| format!("/metrics: {e}"))?;
    let (_, readyz, readyz_time) = http::get(admin, "localhost", "/readyz")
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    let load = http::load(plain, n, args.connections, args.duration).await;
    let rss_loaded_kib = rss_kib(proxy.pid());
    // Two refresh periods, so every document is due at least once whatever the phase.
    let window_end = window + 2 * args.refresh;
    while Instant::now() < window_end {
        tokio::time::sleep(window_end.saturating_duration_since(Instant::now())).await;
    }
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let upstream_per_minute = (fleet.upstream_hits() - hits_ready) as f64 / minutes;
    drop(proxy);
    Ok(Row {
        issuers: n,
        rss_ready_kib,
        rss_loaded_kib,
        ready_after,
        metrics_bytes: metrics.len(),
        metrics_time,
        readyz_bytes: readyz.len(),
        readyz_time,
        load,
        startup_fetches: hits_ready,
        upstream_per_minute,
    })
}

async fn run(args: Args) {
    if let Some(path) = &args.fleet_only {
        let n = args.issuers.first().copied().unwrap_or(1);
        let fleet = Fleet::start(n, args.idps).await;
        std::fs::write(path, fleet.config(args.refresh)).expect("the config is written");
        println!(
            "{n} issuers served for {:?}; config in {}",
            args.duration,
            path.display()
        );
        tokio::time::sleep(args.duration).await;
        return;
    }
    println!(
        "\njwks-edge scale benchmark: {} fake IdP(s), {} keep-alive connections for {:?} per size, access log off, cache defaults",
        args.idps, args.connections, args.duration
    );
    println!(
        "Upstream requests are counted from ready over {:?} (two refreshes): each issuer's two documents once per refresh is {:.0}·N per minute.",
        2 * args.refresh,
        2.0 * 60.0 / args.refresh.as_secs_f64()
    );
    println!("| issuers | RSS ready | RSS after load | ready after | start-up fetches | /metrics | /readyz | req/s (errors) | upstream req/min |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<Row> = Vec::new();
    for &n in &args.issuers {
        match measure(n, &args).await {
            Ok(row) => {
                println!(
                    "| {} | {:.1} MiB | {:.1} MiB | {:.2} s | {} | {:.1} KB in {:.1} ms | {:.1} KB in {:.1} ms | {:.0} ({}) | {:.0} |",
                    row.issuers,
                    mib(row.rss_ready_kib),
                    mib(row.rss_loaded_kib),
                    row.ready_after.as_secs_f64(),
                    row.startup_fetches,
                    row.metrics_bytes as f64 / 1000.0,
                    row.metrics_time.as_secs_f64() * 1e3,
                    row.readyz_bytes as f64 / 1000.0,
                    row.readyz_time.as_secs_f64() * 1e3,
                    row.load.rps(),
                    row.load.errors,
                    row.upstream_per_minute,
                );
                rows.push(row);
            }
            Err(e) => println!("| {n} | {e} | | | | | | | |"),
        }
    }
    // Memory per issuer: the slope between consecutive sizes, so the fixed cost drops out.
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let per = |x: u64, y: u64| (y as f64 - x as f64) / (b.issuers - a.issuers) as f64;
        println!(
            "\n{} → {} issuers: {:.1} KiB per issuer when ready, {:.1} KiB after load",
            a.issuers,
            b.issuers,
            per(a.rss_ready_kib, b.rss_ready_kib),
            per(a.rss_loaded_kib, b.rss_loaded_kib)
        );
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(args));
}
