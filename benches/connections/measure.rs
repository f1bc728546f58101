//! One measurement of a kind: a fresh server warmed up, then its RSS and the kernel's TCP
//! memory with half and with all of the connections open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::open;
use crate::memory::{send_queue_bytes, settled_rss, tcp_kernel_kib};
use crate::server::{open_connections, serves, start_server};
use crate::Kind;

pub struct Sample {
    /// KiB per connection over the first half, and over all of them.
    pub half: f64,
    pub all: f64,
    /// Send-queue KiB per connection, with all open.
    pub queued: f64,
    /// Kernel TCP memory KiB per connection (both ends; the client's is its 4 KiB buffer).
    pub kernel: f64,
    pub baseline_kib: u64,
}

pub async fn measure(
    kind: Kind,
    connections: usize,
    config: &std::path::Path,
    tls: &Arc<rustls::ClientConfig>,
) -> Sample {
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
