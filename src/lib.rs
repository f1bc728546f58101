//! jwks-edge publishes the OpenID Connect discovery document and key set of self-hosted
//! identity providers to cloud relying parties, from memory, under a hard deadline.
//!
//! The modules are layers, listed top to bottom; a module uses only the layers below it, and no
//! two files import each other, however indirectly (`tests/architecture/main.rs` checks both):
//!
//! ```text
//! doctor     `jwks-edge doctor`: the relying party's checks, from outside
//! fake_idp   a fault-injecting IdP for the demo, the tests and the benches
//! app        builds everything below from config::Config and runs it on given listeners
//! ops        the admin listener: /healthz, /readyz and the status page at / (one survey),
//!            /metrics, refresh and drop-retained
//! edge       accept loop and connection budgets -> one connection under its deadlines
//!            -> Proxy: route lookup -> store -> pre-rendered document (or a rejection),
//!            access log, reach
//! publish    one task per [[publish]] sink and issuer: the store's copies -> object
//!            layout (key set first) -> write when the bytes or headers differ -> status
//! upstream   one refresher per document: fetch -> checks -> rewrite (discovery), or
//!            keyset rules -> rotation (key set) -> store, routes, health, key board,
//!            snapshot; on its period, on a failure's backoff, or when revalidate pokes it
//! tls        PEM material, the SNI resolver (reloads), server and client configs, the
//!            challenge answers, and acme/, which renews certificates into the resolver
//! cache      what is kept between fetches: store, routing table, health, key board,
//!            refresh-ahead gate, snapshots and private files on disk
//! telemetry  the metric registry every layer counts into; requests by client family
//!            (reach); the batched log sink
//! config     the file's settings, validated, with connection limits and key settings
//! model      shared data: DocId, Document, JwksTarget, key records, BaseUrl, timestamps,
//!            client families
//! ```
//!
//! The crate root holds only `error_chain`, which every layer may use.
#![forbid(unsafe_code)]

pub mod app;
pub mod cache;
pub mod config;
pub mod doctor;
pub mod edge;
pub mod fake_idp;
pub mod model;
pub mod ops;
pub mod publish;
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
