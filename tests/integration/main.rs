//! Integration tests: real proxies, fake IdPs and clients on loopback sockets.

mod certificates;
mod cli;
mod doctor;
mod faults;
mod hostile;
mod operations;
mod process;
mod properties;
mod serving;
mod support;
mod upstream;
