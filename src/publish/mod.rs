//! Pushing the checked, rewritten documents to object storage (`[[publish]]`): S3, GCS
//! and Azure Blob through object_store, over our own HTTP client (`transport`).
//!
//! `sink` opens each bucket; `layout` names the objects (prefix + public path, key set
//! first); `writer` writes one object when its hash or headers differ; `publisher` runs
//! one task per (sink, issuer), retrying with the refreshers' backoff
//! (`upstream::refresh::schedule`); `status` is what `/readyz` shows.

pub mod layout;
pub mod publisher;
pub mod sink;
pub mod status;
pub mod transport;
pub mod writer;
