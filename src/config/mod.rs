//! Configuration: the TOML file (`raw`) validated into the typed `Config` the program runs on.
//!
//! `load` reads the file into `raw`, turns each section into its `settings` type in
//! `sections`, then checks the issuers against one another (`collisions`); every refusal
//! is an `error::ConfigError` naming the key. `display` renders the result for `check-config`.

mod collisions;
mod display;
mod error;
pub mod keys;
pub mod limits;
mod load;
mod raw;
mod sections;
mod settings;

pub use error::ConfigError;
pub use settings::{
    Acme, AcmeChallenge, Admin, Cache, Cloud, Config, Issuer, Log, Publish, Readiness, Server, ServerTls, Tls,
    LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
};

#[cfg(test)]
mod tests;
