//! Everything between the IdP and the cache: fetching each document, checking it,
//! rewriting the discovery document, applying the key set rules and key retention, and
//! the refresher tasks that run all of it on their schedule.

pub mod checks;
pub mod fetch;
pub mod keyset;
pub mod permits;
pub mod refresh;
pub mod rewrite;
pub mod rotation;
