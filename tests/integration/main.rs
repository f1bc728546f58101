//! Integration tests: real proxies, fake IdPs and clients on loopback sockets.

mod cli;
mod faults;
mod hostile;
mod serving;
mod support;
mod upstream;
