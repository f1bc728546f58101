//! The config tests, one file per section of the file (as in `sections/`).

mod admin;
mod cache;
mod collisions;
mod effective;
mod fixtures;
mod issuer;
mod keys;
mod publish;
mod server;
mod tls;
mod values;
