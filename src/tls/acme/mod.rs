//! ACME (RFC 8555): the HTTPS certificates obtained and renewed from a CA such as Let's
//! Encrypt, with TLS-ALPN-01 (RFC 8737) or HTTP-01 answered by the proxy's own listeners.
//!
//! The protocol is `instant-acme`'s; `manager` decides when to order (each `plan` keeps
//! one certificate's schedule), `order` talks to the CA through the bounded client in
//! `https`, `cache_dir` keeps the account key and certificates, and `status` is what
//! `/readyz` shows. Each new certificate is installed into the `CertResolver`; a failed
//! order never removes one.

mod cache_dir;
mod error;
mod https;
mod manager;
mod order;
mod plan;
mod status;

pub use error::AcmeError;
pub use manager::AcmeManager;
pub use plan::{renew_at, retry_delay};
pub use status::{AcmeStatus, CertRecord, CertState};
