//! The limits a key history lives under: retained keys leave when their time is up, and
//! the oldest ones first when a type (or all together) would exceed the key cap.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::keys::KeyCap;
use crate::upstream::rotation::event::{ExpiryReason, KeyEvent};
use crate::upstream::rotation::record::KeyRecord;

/// Ends the timers of retained keys that have run out, then drops the oldest retained
/// keys of each capped type until the set fits.
pub(super) fn settle(
    records: &mut Vec<KeyRecord>,
    upstream: &[Value],
    keep: Duration,
    cap: KeyCap,
    now: SystemTime,
) -> Vec<KeyEvent> {
    let mut events = Vec::new();
    let mut gone = vec![false; records.len()];
    for (i, record) in records.iter().enumerate() {
        let Some(removed_at) = record.removed_at else {
            continue;
        };
        // A clock that went back keeps the key until it catches up, never longer.
        if now.duration_since(removed_at).unwrap_or_default() >= keep {
            gone[i] = true;
            events.push(KeyEvent::Expired {
                kid: record.kid.clone(),
                reason: ExpiryReason::Timer,
            });
        }
    }
    // Per type, then all together: `None` counts every type.
    let limits = [
        (Some("RSA"), Some(cap.rsa)),
        (Some("EC"), Some(cap.ec)),
        (None, cap.total),
    ];
    for (kty, limit) in limits {
        let Some(limit) = limit else {
            continue;
        };
        let counted = |t: Option<&str>| kty.is_none() || t == kty;
        let room = limit.saturating_sub(
            upstream
                .iter()
                .filter(|k| counted(k.get("kty").and_then(Value::as_str)))
                .count(),
        );
        let mut retained: Vec<usize> = (0..records.len())
            .filter(|&i| !gone[i] && records[i].removed_at.is_some() && counted(records[i].kty.as_deref()))
            .collect();
        retained.sort_by_key(|&i| (records[i].removed_at, i));
        let excess = retained.len().saturating_sub(room);
        for &i in &retained[..excess] {
            gone[i] = true;
            events.push(KeyEvent::Expired {
                kid: records[i].kid.clone(),
                reason: ExpiryReason::Cap,
            });
        }
    }
    let mut flags = gone.into_iter();
    records.retain(|_| !flags.next().unwrap_or(false));
    events
}
