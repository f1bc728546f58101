//! Memory as the kernel reports it: a process's RSS once settled, the bytes queued in a
//! port's send queues, and what all TCP sockets hold.

use std::time::{Duration, Instant};

use crate::common::rss::rss_kib;

/// Bytes in the send queues of the server's sockets on `port` (/proc/net/tcp `tx_queue`:
/// data not yet acknowledged). The kernel's own overhead per buffer comes on top.
pub fn send_queue_bytes(port: u16) -> u64 {
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
pub fn tcp_kernel_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// RSS once it has settled: two samples 500 ms apart within 0.5 % (at most 15 s).
pub async fn settled_rss(pid: u32) -> u64 {
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
