//! What is known of one key: its state, its times, and the form they take on disk.

use std::time::SystemTime;

use serde_json::Value;

use crate::model::keys::{KeyState, SavedKey};
use crate::model::timestamp;

/// A key identifies as its `kid`, or, without one, as its whole JSON.
pub(super) fn key_id(key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("kid:{kid}"),
        None => format!("json:{key}"),
    }
}

/// One key's history, kept by its issuer's `KeyRetention`.
#[derive(Clone, Debug)]
pub(super) struct KeyRecord {
    pub id: String,
    pub kid: Option<String>,
    pub kty: Option<String>,
    /// The key as published, kept exactly while it is retained: a current key is in the
    /// upstream's set already (a second parsed copy was a third of an issuer's memory),
    /// and a withdrawn key is never published.
    pub key: Option<Value>,
    pub first_seen: SystemTime,
    pub last_seen_upstream: SystemTime,
    /// When a fetch first missed it; set exactly while it is retained.
    pub removed_at: Option<SystemTime>,
    pub withdrawn: bool,
}

impl KeyRecord {
    pub fn new(key: &Value, withdrawn: bool, now: SystemTime) -> KeyRecord {
        KeyRecord {
            id: key_id(key),
            kid: key.get("kid").and_then(Value::as_str).map(str::to_owned),
            kty: key.get("kty").and_then(Value::as_str).map(str::to_owned),
            key: None,
            first_seen: now,
            last_seen_upstream: now,
            removed_at: None,
            withdrawn,
        }
    }

    pub fn state(&self) -> KeyState {
        match (self.withdrawn, self.removed_at) {
            (true, _) => KeyState::Withdrawn,
            (false, Some(_)) => KeyState::Retained,
            (false, None) => KeyState::Current,
        }
    }

    pub fn saved(&self) -> SavedKey {
        SavedKey {
            id: self.id.clone(),
            kty: self.kty.clone(),
            first_seen_unix_ms: timestamp::unix_millis(self.first_seen),
            last_seen_upstream_unix_ms: timestamp::unix_millis(self.last_seen_upstream),
            removed_at_unix_ms: self.removed_at.map(timestamp::unix_millis),
            withdrawn: self.withdrawn,
        }
    }
}
