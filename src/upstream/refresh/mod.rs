//! Refresher tasks: the only code that fetches, validates and stores documents, two per
//! issuer (discovery, key set), on their schedule or when asked.

mod control;
mod discovery;
mod issuer;
mod key_set;
mod restore;
pub mod schedule;
mod startup;

pub use control::{spawn_all, DropRequest, RefreshControl, RefreshRequest};
pub use issuer::IssuerRefresh;
pub use startup::StartupReport;
