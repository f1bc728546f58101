//! jwks-edge publishes the OpenID Connect discovery document and key set of self-hosted
//! identity providers to cloud relying parties, from memory, under a hard deadline.
//!
//! A request's path through the modules:
//!
//! ```text
//! server   accept (tcp; address_limit per client) -> tls (rustls; certs::CertResolver picks by
//!          SNI, reloads) -> connection (hyper auto conn under header/idle/send deadlines)
//!   -> service::Proxy   routes::RouteTable(host, path) -> DocId (one lookup in the table
//!                       the discovery refreshers publish whole)
//!   -> store::DocumentStore::get(DocId) -> document::Document (pre-rendered bytes + headers)
//!   -> revalidate       an aging key set may poke its refresher (one compare-and-swap,
//!                       granted at most once per cache.revalidate_after; never waits)
//!   -> response         synthetic 4xx/5xx answers, all built in one place
//!   -> access_log       one line per request, into log_sink (batched writes to stderr)
//!
//! refresh  one task per document: fetch::Fetcher -> validate -> rewrite (discovery), or
//!          keyset::KeySetRules (key_hygiene, key_policy, prepublished) -> rotation::KeyRetention
//!          (key set: withdrawn keys out, removed keys kept a while) -> store.put, health
//!          record, key_board::KeyBoard, snapshot to disk; on its period, on a failure's
//!          backoff, or early when poked by revalidate
//! admin    /healthz, /readyz (store + health::HealthBoard + key_board), /metrics
//!          (metrics::Metrics), POST /admin/refresh and /admin/drop-retained, on the admin listener
//! acme     [server.tls.acme]: orders and renews certificates into certs::CertResolver,
//!          answering TLS-ALPN-01 in the resolver or HTTP-01 in service::Proxy
//! files    snapshot and ACME files: private directories, atomic writes, no links followed
//! timestamp every time read, converted or formatted: checked and clamped, never a panic
//! app      builds all of the above from config::Config and runs it on given listeners
//! fd_limit `serve` start-up: RLIMIT_NOFILE raised and checked against the connection limits
//! doctor   `jwks-edge doctor`: the relying party's checks, from outside
//! fake_idp a fault-injecting IdP for the demo, the tests and the benches
//! ```
#![forbid(unsafe_code)]

pub mod app;
pub mod cache;
pub mod config;
pub mod doctor;
pub mod edge;
pub mod fake_idp;
pub mod model;
pub mod ops;
pub mod telemetry;
pub mod tls;
pub mod upstream;

/// An error and all its causes on one line, for logs and status pages.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
