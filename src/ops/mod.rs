//! The operator's side: the admin listener (health, readiness and the status page from one
//! survey, metrics, refresh and drop-retained actions), reading the state the lower
//! layers keep.

mod actions;
pub mod admin;
mod page;
mod page_issuer;
mod page_summary;
mod readiness;
mod routing;
mod scrape;
mod survey;

pub use admin::{Admin, Startup};
