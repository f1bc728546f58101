//! Integration tests: real proxies, fake IdPs and clients on loopback sockets.

mod cli;
mod faults;
mod serving;
mod support;
