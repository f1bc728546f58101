//! Integration tests: real proxies, fake IdPs and clients on loopback sockets.

mod acme;
mod certificates;
mod cli;
mod connections;
mod doctor;
mod faults;
mod hostile;
mod operations;
mod pebble;
mod process;
mod properties;
mod serving;
mod support;
mod upstream;
