//! The public side of a request: the accept loop and its connection budgets, each
//! connection under its deadlines, the `Proxy` handler that answers from the cache, the
//! error answers of both listeners (`Reject`), and the access log.

pub mod access_log;
mod activity;
pub mod address_limit;
pub mod connection;
pub mod fd_limit;
pub mod proxy;
pub mod reject;
pub mod server;
mod watched;
