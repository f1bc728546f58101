//! One whole run: the fake IdP, the proxy and the ceiling started, each scenario loaded
//! against both, and the table, the hanging-upstream row and the totals printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwks_edge::fake_idp::Fault;

use crate::common::rss::rss_kib;
use crate::common::{keycloak_idp, BenchTls, HOST};
use crate::generator::{client_config, connect, load, request, Mode, Stats, Target};
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
