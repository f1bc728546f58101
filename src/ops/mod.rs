//! The operator's side: the admin listener (health, readiness, metrics, refresh and
//! drop-retained actions), reading the state the lower layers keep.

mod actions;
pub mod admin;
mod readiness;
mod routing;
mod scrape;

pub use admin::{Admin, Startup};
