//! `KeyEvent`: one change to an issuer's published keys, logged and counted once.

use std::time::SystemTime;

use tracing::info;

use crate::model::key_event::KeyEventKind;
use crate::model::timestamp;

/// Why a retained key left the published set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    /// `cache.keep_removed_keys` has passed since its removal.
    Timer,
    /// Keeping it would exceed the cap on keys of its type; the oldest retained go first.
    Cap,
    /// `POST /admin/drop-retained`.
    Dropped,
}

/// One change to the published keys, reported once when it happens (never per fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    /// A key the upstream lists, published for the first time (in this process's history).
    Added { kid: Option<String> },
    /// A published key the upstream no longer lists; retained until the time given, or
    /// gone at once without retention.
    Removed {
        kid: Option<String>,
        retained_until: Option<SystemTime>,
    },
    /// A retained key no longer published.
    Expired { kid: Option<String>, reason: ExpiryReason },
    /// A key listed in `withdrawn_kids` seen in the upstream's set or a snapshot: never
    /// published. Reported once per appearance.
    Withdrawn { kid: String },
}

impl KeyEvent {
    /// The kind this event is counted and logged as.
    pub fn kind(&self) -> KeyEventKind {
        match self {
            KeyEvent::Added { .. } => KeyEventKind::Added,
            KeyEvent::Removed { .. } => KeyEventKind::Removed,
            KeyEvent::Expired { .. } => KeyEventKind::Expired,
            KeyEvent::Withdrawn { .. } => KeyEventKind::Withdrawn,
        }
    }

    /// The key's `kid`, when it has one.
    pub fn kid(&self) -> Option<&str> {
        match self {
            KeyEvent::Added { kid } | KeyEvent::Removed { kid, .. } | KeyEvent::Expired { kid, .. } => kid.as_deref(),
            KeyEvent::Withdrawn { kid } => Some(kid),
        }
    }

    /// One INFO line with `issuer`, `kid` and `event` fields.
    pub fn log(&self, issuer: &str) {
        let event = self.kind().as_str();
        let kid = |kid: &Option<String>| kid.clone().unwrap_or_else(|| "(none)".to_owned());
        match self {
            KeyEvent::Added { kid: k } => info!(issuer = %issuer, kid = %kid(k), %event, "key published"),
            KeyEvent::Removed {
                kid: k,
                retained_until: Some(until),
            } => info!(
                issuer = %issuer,
                kid = %kid(k),
                %event,
                retained_until = %timestamp::rfc3339_seconds(*until),
                "key removed upstream, still published until keep_removed_keys has passed"
            ),
            KeyEvent::Removed {
                kid: k,
                retained_until: None,
            } => info!(issuer = %issuer, kid = %kid(k), %event, "key removed upstream, no longer published"),
            KeyEvent::Expired { kid: k, reason } => {
                let why = match reason {
                    ExpiryReason::Timer => "keep_removed_keys has passed",
                    ExpiryReason::Cap => "the oldest retained key goes first to stay under the key cap",
                    ExpiryReason::Dropped => "dropped by POST /admin/drop-retained",
                };
                info!(issuer = %issuer, kid = %kid(k), %event, "retained key no longer published: {why}");
            }
            KeyEvent::Withdrawn { kid } => info!(
                issuer = %issuer,
                kid = %kid,
                %event,
                "key withdrawn by withdrawn_kids: never published, whatever the upstream or a snapshot holds"
            ),
        }
    }
}
