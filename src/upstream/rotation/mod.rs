//! `KeyRetention`: an issuer's key history, and the key set published from it — the
//! upstream's keys minus withdrawn ones, plus removed keys kept for `cache.keep_removed_keys`.
//!
//! Time is a parameter: every method that can start or end a timer takes `now`.

mod event;
mod record;
mod settle;
#[cfg(test)]
mod tests;

pub use event::{ExpiryReason, KeyEvent};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::config::keys::KeyCap;
use crate::model::keys::{KeyState, KeyStatus, KeySummary, SavedKey};
use crate::model::timestamp;
use crate::upstream::keyset::hygiene::is_public_signing_key;
use record::{key_id, KeyRecord};
use settle::settle;

/// Why a validated upstream set yields nothing to publish; it is refused like an invalid
/// answer, and the last good copy (which never holds a withdrawn key) stays.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unpublishable {
    #[error("not a key set")]
    NotAKeySet,
    #[error("every key of the upstream's set is listed in withdrawn_kids and no removed key is retained: nothing to publish")]
    AllWithdrawn,
    #[error("every public signing key of the upstream's set is listed in withdrawn_kids and none is retained: relying parties could verify nothing")]
    NoSigningKeyLeft,
}

/// Why `POST /admin/drop-retained` changed nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DropRefused {
    #[error(
        "the upstream lists no publishable key, so dropping the retained keys would leave an empty key set; \
         withdraw a key with withdrawn_kids instead"
    )]
    WouldEmpty,
}

/// The upstream set the published one is built from.
#[derive(Clone, Debug)]
struct Upstream {
    /// The upstream's bytes, while they can be published as they are (no key withdrawn).
    verbatim: Option<Bytes>,
    /// The set's fields other than `keys`.
    rest: Map<String, Value>,
    /// The upstream's keys in its order, withdrawn ones left out, kept parsed only when
    /// the set is not published verbatim. A verbatim set is parsed again on the rare
    /// occasions its keys are needed (a key removed, a timer run out, retained keys to
    /// add): the parsed copy of every issuer's set was 4 KB of `serde_json` values each.
    parsed: Option<Vec<Value>>,
    /// How many keys `keys()` holds.
    count: usize,
}

impl Upstream {
    fn new(verbatim: Option<Bytes>, rest: Map<String, Value>, keys: Vec<Value>) -> Upstream {
        Upstream {
            count: keys.len(),
            parsed: verbatim.is_none().then_some(keys),
            verbatim,
            rest,
        }
    }

    /// The upstream's keys in its order, withdrawn ones left out.
    fn keys(&self) -> Cow<'_, [Value]> {
        match (&self.parsed, &self.verbatim) {
            (Some(keys), _) => Cow::Borrowed(keys),
            // Published verbatim: no key was left out, so these are all of its keys.
            (None, Some(verbatim)) => Cow::Owned(keys_of(verbatim).map(|(_, keys)| keys).unwrap_or_default()),
            (None, None) => Cow::Borrowed(&[]),
        }
    }
}

/// The key history of one issuer, owned by its key set refresher.
#[derive(Clone, Debug)]
pub struct KeyRetention {
    keep: Duration,
    cap: KeyCap,
    withdrawn: HashSet<String>,
    upstream: Option<Upstream>,
    /// One record per key id: the upstream's keys (current or withdrawn) in its order,
    /// then the retained ones, oldest removal first.
    records: Vec<KeyRecord>,
}

fn keys_of(body: &[u8]) -> Option<(Map<String, Value>, Vec<Value>)> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match map.remove("keys") {
        Some(Value::Array(keys)) => Some((map, keys)),
        _ => None,
    }
}

impl KeyRetention {
    /// Keeps removed keys for `keep` (zero: not at all), under `cap`, and never publishes
    /// a key whose `kid` is in `withdrawn`.
    pub fn new(keep: Duration, cap: KeyCap, withdrawn: &[String]) -> KeyRetention {
        KeyRetention {
            keep,
            cap,
            withdrawn: withdrawn.iter().cloned().collect(),
            upstream: None,
            records: Vec::new(),
        }
    }

    fn is_withdrawn(&self, key: &Value) -> bool {
        key.get("kid")
            .and_then(Value::as_str)
            .is_some_and(|kid| self.withdrawn.contains(kid))
    }

    /// Starts from a set published before a restart (a snapshot's body, fetched at
    /// `fetched_at`) and the history saved with it. Timers keep running from the saved
    /// removal times; withdrawn keys and expired retained keys are left out at once (see
    /// `body`). Without a saved history (a snapshot written before it was kept), every
    /// key of the body counts as listed upstream at `fetched_at`. Times later than `now`
    /// count as `now`.
    pub fn restore(
        &mut self,
        body: &[u8],
        fetched_at: SystemTime,
        saved: Option<&[SavedKey]>,
        now: SystemTime,
    ) -> Vec<KeyEvent> {
        let Some((rest, keys)) = keys_of(body) else {
            return Vec::new();
        };
        let at = |ms: u64| timestamp::from_unix_millis(ms).min(now);
        let fetched_at = timestamp::clamp(fetched_at).min(now);
        let saved = saved.unwrap_or_default();
        let by_id: HashMap<&str, &SavedKey> = saved.iter().map(|s| (s.id.as_str(), s)).collect();
        let (mut events, mut records, mut retained, mut upstream_keys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        let mut verbatim = true;
        for key in keys {
            let id = key_id(&key);
            let entry = by_id.get(id.as_str());
            let withdrawn = self.is_withdrawn(&key);
            let removed_at = entry.and_then(|e| e.removed_at_unix_ms).map(at);
            if withdrawn || removed_at.is_some() {
                verbatim = false;
            } else {
                upstream_keys.push(key.clone());
            }
            if !seen.insert(id) {
                continue;
            }
            let mut record = KeyRecord::new(&key, withdrawn, fetched_at);
            if let Some(entry) = entry {
                record.first_seen = at(entry.first_seen_unix_ms);
                record.last_seen_upstream = at(entry.last_seen_upstream_unix_ms);
            }
            if let Some(kid) = record.kid.clone().filter(|_| withdrawn) {
                events.push(KeyEvent::Withdrawn { kid });
                if removed_at.is_some() {
                    // Retained and withdrawn: gone upstream and never published again.
                    continue;
                }
            }
            record.removed_at = removed_at.filter(|_| !withdrawn);
            match record.removed_at {
                Some(_) => {
                    record.key = Some(key.clone());
                    retained.push(record);
                }
                None => records.push(record),
            }
        }
        // Withdrawn keys the upstream listed at the snapshot: never in the body.
        for entry in saved.iter().filter(|e| e.withdrawn) {
            let Some(kid) = entry.id.strip_prefix("kid:").filter(|k| self.withdrawn.contains(*k)) else {
                continue;
            };
            if !seen.insert(entry.id.clone()) {
                continue;
            }
            events.push(KeyEvent::Withdrawn { kid: kid.to_owned() });
            records.push(KeyRecord {
                id: entry.id.clone(),
                kid: Some(kid.to_owned()),
                kty: entry.kty.clone(),
                key: None,
                first_seen: at(entry.first_seen_unix_ms),
                last_seen_upstream: at(entry.last_seen_upstream_unix_ms),
                removed_at: None,
                withdrawn: true,
            });
        }
        retained.sort_by_key(|r| r.removed_at);
        records.extend(retained);
        events.extend(settle(&mut records, &upstream_keys, self.keep, self.cap, now));
        self.records = records;
        self.upstream = Some(Upstream::new(
            verbatim.then(|| Bytes::copy_from_slice(body)),
            rest,
            upstream_keys,
        ));
        events
    }

    /// Takes in a validated upstream set fetched at `now`, and returns the set to publish
    /// — the upstream's keys (withdrawn ones left out) first, then retained ones — with
    /// what changed. The upstream's bytes are published as they are when nothing is
    /// left out or added. A refused set changes nothing.
    pub fn publish(&mut self, upstream: Bytes, now: SystemTime) -> Result<(Bytes, Vec<KeyEvent>), Unpublishable> {
        let (rest, keys) = keys_of(&upstream).ok_or(Unpublishable::NotAKeySet)?;
        let mut previous: HashMap<String, KeyRecord> = self.records.iter().map(|r| (r.id.clone(), r.clone())).collect();
        let (mut events, mut records, mut published) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        let mut any_withdrawn = false;
        for key in keys {
            let withdrawn = self.is_withdrawn(&key);
            any_withdrawn |= withdrawn;
            let mut record = KeyRecord::new(&key, withdrawn, now);
            if !withdrawn {
                published.push(key);
            }
            if !seen.insert(record.id.clone()) {
                // The same `kid` twice upstream: both are published, one history.
                continue;
            }
            let before = previous.remove(&record.id);
            if let Some(before) = &before {
                record.first_seen = before.first_seen;
            }
            let was_withdrawn = before.as_ref().map(|b| b.withdrawn);
            match (withdrawn, was_withdrawn) {
                (true, Some(true)) | (false, Some(false)) => {}
                (true, _) => events.push(KeyEvent::Withdrawn {
                    kid: record.kid.clone().unwrap_or_default(),
                }),
                (false, _) => events.push(KeyEvent::Added {
                    kid: record.kid.clone(),
                }),
            }
            records.push(record);
        }
        let mut newly_removed = Vec::new();
        for record in &self.records {
            let Some(mut record) = previous.remove(&record.id) else {
                continue;
            };
            match record.state() {
                // Gone upstream: nothing left to withhold.
                KeyState::Withdrawn => {}
                KeyState::Retained => records.push(record),
                KeyState::Current => {
                    // Kept from here on: the upstream's set no longer holds it.
                    record.key = self.upstream_key(&record.id);
                    let retained_until = (!self.keep.is_zero()).then(|| timestamp::add(now, self.keep));
                    events.push(KeyEvent::Removed {
                        kid: record.kid.clone(),
                        retained_until,
                    });
                    if retained_until.is_some() && record.key.is_some() {
                        record.removed_at = Some(now);
                        newly_removed.push(record);
                    }
                }
            }
        }
        records.extend(newly_removed);
        events.extend(settle(&mut records, &published, self.keep, self.cap, now));
        let retained = || {
            records
                .iter()
                .filter(|r| r.state() == KeyState::Retained)
                .filter_map(|r| r.key.as_ref())
        };
        if published.is_empty() && retained().next().is_none() {
            return Err(Unpublishable::AllWithdrawn);
        }
        // Hygiene checked the upstream's set before withdrawal; check what is left.
        if !published.iter().chain(retained()).any(is_public_signing_key) {
            return Err(Unpublishable::NoSigningKeyLeft);
        }
        self.records = records;
        self.upstream = Some(Upstream::new((!any_withdrawn).then_some(upstream), rest, published));
        Ok((self.body().expect("a set with a key to publish"), events))
    }

    /// Ends the timers that have run out by `now`, between fetches (the upstream may be
    /// down): when events are returned, `body` has changed.
    pub fn expire(&mut self, now: SystemTime) -> Vec<KeyEvent> {
        let upstream = self.upstream.as_ref().map(Upstream::keys).unwrap_or_default();
        settle(&mut self.records, &upstream, self.keep, self.cap, now)
    }

    /// Stops publishing every retained key now; refused when nothing would be left.
    pub fn drop_retained(&mut self) -> Result<Vec<KeyEvent>, DropRefused> {
        if !self.records.iter().any(|r| r.state() == KeyState::Retained) {
            return Ok(Vec::new());
        }
        if self.upstream.as_ref().is_none_or(|u| u.count == 0) {
            return Err(DropRefused::WouldEmpty);
        }
        let mut events = Vec::new();
        self.records.retain(|r| {
            let retained = r.state() == KeyState::Retained;
            if retained {
                events.push(KeyEvent::Expired {
                    kid: r.kid.clone(),
                    reason: ExpiryReason::Dropped,
                });
            }
            !retained
        });
        Ok(events)
    }

    /// The key with this id in the upstream set published last.
    fn upstream_key(&self, id: &str) -> Option<Value> {
        self.upstream.as_ref()?.keys().iter().find(|k| key_id(k) == id).cloned()
    }

    fn retained_keys(&self) -> impl Iterator<Item = &Value> {
        self.records
            .iter()
            .filter(|r| r.state() == KeyState::Retained)
            .filter_map(|r| r.key.as_ref())
    }

    /// The set to publish now; `None` when it would hold no key (nothing may be served).
    pub fn body(&self) -> Option<Bytes> {
        let upstream = self.upstream.as_ref()?;
        let retained: Vec<&Value> = self.retained_keys().collect();
        if upstream.count == 0 && retained.is_empty() {
            return None;
        }
        if let (true, Some(verbatim)) = (retained.is_empty(), &upstream.verbatim) {
            return Some(verbatim.clone());
        }
        let mut keys = upstream.keys().into_owned();
        keys.extend(retained.into_iter().cloned());
        // `keys` first, as IdPs write it, then the upstream's other fields.
        let mut out = Map::new();
        out.insert("keys".to_owned(), Value::Array(keys));
        out.extend(upstream.rest.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(Bytes::from(
            serde_json::to_vec(&Value::Object(out)).expect("a JSON value always serialises"),
        ))
    }

    /// The history to save with the published set.
    pub fn saved(&self) -> Vec<SavedKey> {
        self.records.iter().map(|r| r.saved()).collect()
    }

    /// What the admin listener shows.
    pub fn summary(&self) -> KeySummary {
        KeySummary {
            published: self.upstream.as_ref().map_or(0, |u| u.count) + self.retained_keys().count(),
            keys: self
                .records
                .iter()
                .map(|r| KeyStatus {
                    kid: r.kid.clone(),
                    kty: r.kty.clone(),
                    state: r.state(),
                    first_seen: r.first_seen,
                    last_seen_upstream: r.last_seen_upstream,
                    removed_at: r.removed_at,
                    expires_at: r.removed_at.map(|t| timestamp::add(t, self.keep)),
                })
                .collect(),
        }
    }
}
