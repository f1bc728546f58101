//! What is kept between fetches: the last good copy of every document (`store`), the
//! routing table the refreshers publish (`routes`), each document's health and each
//! issuer's keys as readers see them, the refresh-ahead gate, and the snapshots and private
//! files on disk that survive a restart.

pub mod files;
pub mod health;
pub mod key_board;
pub mod revalidate;
pub mod routes;
pub mod snapshot;
pub mod store;
