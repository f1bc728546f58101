//! End-to-end load benchmark: jwks-edge against a ceiling server (a minimal hyper + rustls
//! server returning the same bytes from memory), on loopback, scenario by scenario.
//!
//! `cargo bench --bench load [-- --duration 5s --connections 64 --server-cpu 0 --client-cpu 1]`
//!
//! Servers (the proxy, the ceiling) run as child processes pinned with `taskset` to
//! `--server-cpu`; this process, the load generator, pins itself to `--client-cpu`.
//! The generator is written here on hyper and rustls because the handshake scenarios need
//! session resumption switched on and off, which wrk, oha and h2load cannot all do.

use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../common/mod.rs"]
mod common;

mod ceiling;
mod cpu;
mod generator;
mod scenarios;
mod servers;

/// Set on the child that is to be the ceiling server instead of the load generator.
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
        return ceiling::ceiling();
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
    runtime.block_on(scenarios::run(args));
}
