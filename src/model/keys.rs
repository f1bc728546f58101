//! What readers and the snapshot know of one key: its state, its times, and the form
//! they take on disk. `upstream::rotation` keeps the history these are made from.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

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
