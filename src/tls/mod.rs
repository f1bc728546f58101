//! TLS on both sides: certificates and keys from PEM, the resolver that picks the server
//! certificate by SNI and reloads it, the public listeners' rustls configuration, upstream
//! trust, the challenge answers a CA's validation reads, and ACME, which obtains and renews
//! certificates into the resolver.

pub mod acme;
pub mod challenges;
pub mod client;
pub mod material;
pub mod resolver;
pub mod server;

pub use client::client_config;
pub use material::{certified_key_from_pem, load_certified_key, provider, TlsError};
pub use server::server_config;
