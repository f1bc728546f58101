//! One whole run: the fake IdP, the proxy and the ceiling started, each scenario loaded
//! against both, and the table, the hanging-upstream row and the totals printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwks_edge::fake_idp::Fault;

use crate::ceiling::write_headers;
use crate::common::rss::rss_kib;
use crate::common::{keycloak_idp, BenchTls, HOST};
use crate::cpu::{bottleneck, CpuSpan};
use crate::generator::{client_config, connect, load, request, response_headers, Mode, Stats, Target};
use crate::servers::{addresses, spawn_pinned};
use crate::Args;

pub async fn run(args: Args) {
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
    // The ceiling sends the proxy's own response headers.
    let mut sender = connect(&warm_target).await.expect("the proxy answers");
    let headers = response_headers(&mut sender).await.expect("the proxy answers");
    let headers_path = dir.path().join("headers.txt");
    write_headers(&headers_path, &headers);
    let me = std::env::current_exe().unwrap();
    let cert_arg = cert.display().to_string();
    let key_arg = key.display().to_string();
    let headers_arg = headers_path.display().to_string();
    let mut ceiling = spawn_pinned(
        args.server_cpu,
        &me,
        &[&cert_arg, &key_arg, &headers_arg],
        Some("ceiling"),
    );
    let ceiling_addrs = addresses(&mut ceiling, false, &["https", "plain"]);
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
    println!(
        "Server CPU per request is the figure to compare: req/s only means something for the side that was the bottleneck."
    );
    println!("| scenario | server | req/s | p50 | p99 | max | errors | server CPU µs/req | server busy | generator busy | bottleneck | proxy ÷ ceiling, req/s | proxy ÷ ceiling, req per server CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut proxy_h1 = None;
    for (name, listener, tls, mode) in scenarios {
        let mut results = Vec::new();
        let mut costs = Vec::new();
        for (server, addrs, pid) in [
            ("ceiling", &ceiling_addrs, ceiling.0.id()),
            ("jwks-edge", &proxy_addrs, proxy.0.id()),
        ] {
            let target = Target {
                addr: addrs[listener],
                tls: tls.clone(),
                mode,
            };
            let server_cpu = CpuSpan::start(pid);
            let client_cpu = CpuSpan::start(std::process::id());
            let wall = Instant::now();
            let stats = load(&target, args.connections, args.duration).await;
            let wall = wall.elapsed().as_secs_f64();
            let requests = (stats.requests as f64).max(1.0);
            costs.push(RunCost {
                server_seconds_per_request: server_cpu.spent().as_secs_f64() / requests,
                server_busy: server_cpu.spent().as_secs_f64() / wall,
                client_busy: client_cpu.spent().as_secs_f64() / wall,
            });
            results.push((server, stats));
        }
        let ratio = results[1].1.rps() / results[0].1.rps().max(1.0);
        let cpu_ratio = costs[0].server_seconds_per_request / costs[1].server_seconds_per_request.max(1e-12);
        for ((server, stats), cost) in results.iter().zip(&costs) {
            let proxy = *server == "jwks-edge";
            println!(
                "| {name} | {server} | {:.0} | {:?} | {:?} | {:?} | {} | {:.2} | {:.0} % | {:.0} % | {} | {} | {} |",
                stats.rps(),
                stats.percentile(0.5),
                stats.percentile(0.99),
                stats
                    .latencies
                    .last()
                    .map_or(Duration::ZERO, |m| Duration::from_micros(*m as u64)),
                stats.errors,
                cost.server_seconds_per_request * 1e6,
                cost.server_busy * 100.0,
                cost.client_busy * 100.0,
                bottleneck(cost.server_busy, cost.client_busy),
                if proxy { format!("{ratio:.2}") } else { String::new() },
                if proxy {
                    format!("{cpu_ratio:.2}")
                } else {
                    String::new()
                },
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

/// What one server's run cost, from /proc.
struct RunCost {
    server_seconds_per_request: f64,
    /// CPU seconds per wall second: 1.0 is one core kept busy.
    server_busy: f64,
    client_busy: f64,
}
