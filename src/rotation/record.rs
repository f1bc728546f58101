//! What is known of one key: its state, its times, and the form they take on disk.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::timestamp;

/// A key identifies as its `kid`, or, without one, as its whole JSON.
pub(super) fn key_id(key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("kid:{kid}"),
        None => format!("json:{key}"),
    }
}

/// Where a key stands in its issuer's published set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// In the upstream's set, and published.
    Current,
    /// Gone upstream, still published until `cache.keep_removed_keys` has passed.
    Retained,
    /// In the upstream's set (or a snapshot), never published: `withdrawn_kids` lists it.
    Withdrawn,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Current => "current",
            KeyState::Retained => "retained",
            KeyState::Withdrawn => "withdrawn",
        }
    }
}

/// One key's history, kept by its issuer's `KeyRetention`.
#[derive(Clone, Debug)]
pub(super) struct KeyRecord {
    pub id: String,
    pub kid: Option<String>,
    pub kty: Option<String>,
    /// The key as published; `None` for a withdrawn key, which is never published and
    /// so never kept.
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
            key: (!withdrawn).then(|| key.clone()),
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

/// One key's history as the key set snapshot stores it beside the published set. The
/// key material itself is in the snapshot's body (withdrawn keys have none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedKey {
    /// `kid:<kid>`, or `json:<the key>` for a key without `kid`.
    pub id: String,
    #[serde(default)]
    pub kty: Option<String>,
    pub first_seen_unix_ms: u64,
    pub last_seen_upstream_unix_ms: u64,
    /// Set exactly for a retained key: its timer runs from here, across restarts.
    #[serde(default)]
    pub removed_at_unix_ms: Option<u64>,
    #[serde(default)]
    pub withdrawn: bool,
}

/// What `/readyz` shows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: Option<String>,
    pub kty: Option<String>,
    pub state: KeyState,
    pub first_seen: SystemTime,
    pub last_seen_upstream: SystemTime,
    pub removed_at: Option<SystemTime>,
    /// When a retained key leaves the published set, unless the upstream lists it again.
    pub expires_at: Option<SystemTime>,
}

/// An issuer's keys as the admin listener shows them; replaced whole by its key set
/// refresher after every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySummary {
    /// Keys in the published set (upstream duplicates of one `kid` count each).
    pub published: usize,
    pub keys: Vec<KeyStatus>,
}
