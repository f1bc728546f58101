//! The data every layer shares: documents and their names, where a key set lives, what is
//! known of each key, how fetches and key changes end, the listeners, public URLs and
//! times. It depends on nothing else in the crate.

pub mod base_url;
pub mod client_family;
pub mod doc_id;
pub mod document;
pub mod jwks_target;
pub mod key_event;
pub mod keys;
pub mod listener;
pub mod outcome;
pub mod timestamp;

pub use base_url::BaseUrl;
pub use doc_id::DocId;
pub use jwks_target::{JwksShape, JwksTarget};
