//! `Limits`: the bounds on what one client can hold on a listener, and the connection
//! budgets the defaults are planned from.

use std::time::Duration;

/// Bounds on what one client can hold: every wait has a bound.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once per listener; further clients wait in the backlog.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold on a listener; a further
    /// connection from it is closed at once.
    pub max_connections_per_address: usize,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// The first request head must arrive within this of the connection (or handshake),
    /// and every later HTTP/1 head within this of its first byte (slowloris).
    pub header_timeout: Duration,
    /// A connection with no request in flight and nothing left to send is closed after
    /// this (HTTP/2 with a GOAWAY).
    pub idle_timeout: Duration,
    /// A write the client does not take for this long closes the connection.
    pub send_timeout: Duration,
    /// The kernel send buffer of each connection (SO_SNDBUF; the kernel doubles it for
    /// its bookkeeping); 0 leaves the kernel's autotuning, which grows it to megabytes.
    pub send_buffer_bytes: usize,
    /// Largest HTTP/1 request head and HTTP/2 header list, in bytes.
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
}

/// Connections the public listeners may hold between them by default: with the measured
/// worst case of about 128 KiB per connection (README, "Connection and memory budget"),
/// these and the admin listener's take 72 MiB, within the shipped 128 MiB memory limit
/// with a quarter of it to spare.
pub const PUBLIC_CONNECTION_BUDGET: usize = 512;

/// Planning figure for one connection's memory, process and kernel, in its worst measured
/// state (an HTTP/2 client over TLS that stops reading with every stream answered).
pub const CONNECTION_COST_BYTES: usize = 128 * 1024;

impl Default for Limits {
    /// The defaults for one public listener.
    fn default() -> Limits {
        Limits {
            max_connections: PUBLIC_CONNECTION_BUDGET,
            max_connections_per_address: PUBLIC_CONNECTION_BUDGET / 2,
            tls_handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            send_buffer_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
            max_concurrent_streams: 16,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections the admin listener serves at once: probes and scrapes need a few, and a
/// private listener should not take a share of the memory budget meant for clients.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
