//! Validation: each raw section of the file checked and turned into its typed settings.

pub(super) mod acme;
pub(super) mod admin;
pub(super) mod cache;
pub(super) mod issuer;
pub(super) mod publish;
pub(super) mod server;
pub(super) mod tls;
mod values;
