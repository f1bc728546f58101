//! Builders for the integration tests, one job per module:
//!
//! - `certificates`: a test CA, the leaves it issues, server certificate files;
//! - `idp`: fake IdPs shaped like GitLab, Keycloak and Kubernetes, and the fixtures;
//! - `config`: `[[issuer]]` tables and the other config tables, in the tests' words;
//! - `proxy`: a proxy running in this process, built key by key, e.g.
//!   `Proxy::builder().issuer(Issuer::gitlab(&idp)).state_dir(dir).start().await`;
//! - `client`: connections over plain HTTP, TLS or HTTP/2, and whole replies;
//! - `waiting`: bounded waits that poll a check and return what it waited for;
//! - `child`: child processes, waited for with a bound and killed when the test ends;
//! - `serve`: the `jwks-edge serve` binary as a child process, and its log;
//! - `promql`: metric names a PromQL query reads and a `/metrics` text declares;
//! - `stores`, `seaweedfs`, `azurite`: object-store servers on loopback (S3 by SeaweedFS,
//!   Azure Blob by Azurite) with one bucket each, and what they hold, read back.

mod azurite;
mod certificates;
mod child;
mod client;
mod config;
mod handshake;
mod idp;
mod promql;
mod proxy;
mod seaweedfs;
mod serve;
mod stores;
mod waiting;

use std::time::Duration;

pub use azurite::*;
pub use certificates::*;
pub use child::*;
pub use client::*;
pub use config::Issuer;
pub use handshake::*;
pub use idp::*;
pub use promql::*;
pub use proxy::*;
pub use seaweedfs::*;
pub use serve::*;
pub use stores::*;
pub use waiting::*;

/// Every network wait in the tests is bounded by this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
