//! The operator's side: the admin listener (health, readiness, metrics, refresh and
//! drop-retained actions), reading the state the lower layers keep.

pub mod admin;
