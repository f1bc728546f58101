//! Integration tests: real proxies, fake IdPs and clients on loopback sockets.

mod acme;
mod acme_listeners;
mod certificates;
mod cli;
mod connections;
mod doctor;
mod faults;
mod files;
mod herd;
mod hostile;
mod http2_idle;
mod hygiene;
mod keys;
mod operations;
mod pebble;
mod pebble_probe;
mod prepublished;
mod process;
mod properties;
mod readiness;
mod revalidation;
mod scale;
mod serving;
mod serving_upstream;
mod support;
mod upstream;
