//! `KeyRetention`: keeps keys that vanished upstream published for `cache.keep_removed_keys`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;

/// A key identifies as its `kid`, or, without one, as its whole JSON.
fn key_id(key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("kid:{kid}"),
        None => format!("json:{key}"),
    }
}

#[derive(Debug)]
struct Retained {
    id: String,
    key: Value,
    removed_at: SystemTime,
}

/// The key set history of one issuer, owned by its key set refresher.
#[derive(Debug)]
pub struct KeyRetention {
    keep: Duration,
    /// The keys of the last published set.
    published: Vec<(String, Value)>,
    /// Keys gone upstream but still published, with when they were first missed.
    retained: Vec<Retained>,
}

fn keys_of(body: &[u8]) -> Option<(serde_json::Map<String, Value>, Vec<Value>)> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match map.remove("keys") {
        Some(Value::Array(keys)) => Some((map, keys)),
        _ => None,
    }
}

impl KeyRetention {
    pub fn new(keep: Duration) -> KeyRetention {
        KeyRetention {
            keep,
            published: Vec::new(),
            retained: Vec::new(),
        }
    }

    /// Starts from a set published before a restart (a snapshot). Its keys that are
    /// gone upstream at the next fetch count as removed from then on.
    pub fn seed(&mut self, published: &[u8]) {
        if let Some((_, keys)) = keys_of(published) {
            self.published = keys.into_iter().map(|k| (key_id(&k), k)).collect();
        }
    }

    /// The set to publish for a validated upstream set fetched at `now`: the upstream's
    /// keys first, then retained ones. Without retention the upstream bytes are kept.
    pub fn publish(&mut self, upstream: Bytes, now: SystemTime) -> Bytes {
        if self.keep.is_zero() {
            return upstream;
        }
        let Some((mut rest, keys)) = keys_of(&upstream) else {
            return upstream;
        };
        let current: HashSet<String> = keys.iter().map(key_id).collect();
        for (id, key) in std::mem::take(&mut self.published) {
            if !current.contains(&id) && !self.retained.iter().any(|r| r.id == id) {
                self.retained.push(Retained {
                    id,
                    key,
                    removed_at: now,
                });
            }
        }
        let keep = self.keep;
        self.retained
            .retain(|r| !current.contains(&r.id) && now.duration_since(r.removed_at).unwrap_or_default() < keep);
        self.published = keys.iter().map(|k| (key_id(k), k.clone())).collect();
        if self.retained.is_empty() {
            return upstream;
        }
        let mut merged = keys;
        for retained in &self.retained {
            merged.push(retained.key.clone());
            self.published.push((retained.id.clone(), retained.key.clone()));
        }
        // `keys` first, as IdPs write it, then the upstream's other fields.
        let mut out = serde_json::Map::new();
        out.insert("keys".to_owned(), Value::Array(merged));
        out.append(&mut rest);
        Bytes::from(serde_json::to_vec(&Value::Object(out)).expect("a JSON value always serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kids: &[&str]) -> Bytes {
        let keys: Vec<String> = kids.iter().map(|k| format!(r#"{{"kty":"EC","kid":"{k}"}}"#)).collect();
        Bytes::from(format!(r#"{{"keys":[{}]}}"#, keys.join(",")))
    }

    fn kids(body: &[u8]) -> Vec<String> {
        let value: Value = serde_json::from_slice(body).unwrap();
        value["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn removed_keys_stay_published_for_the_configured_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |s| t0 + Duration::from_secs(s);
        let mut retention = KeyRetention::new(Duration::from_secs(60));
        assert_eq!(kids(&retention.publish(set(&["a", "b"]), t0)), ["a", "b"]);
        // b rotated out at t0+10: still published until t0+70.
        assert_eq!(kids(&retention.publish(set(&["a", "c"]), at(10))), ["a", "c", "b"]);
        assert_eq!(kids(&retention.publish(set(&["a", "c"]), at(69))), ["a", "c", "b"]);
        assert_eq!(kids(&retention.publish(set(&["a", "c"]), at(70))), ["a", "c"]);
        // A key that comes back is not listed twice.
        let mut retention = KeyRetention::new(Duration::from_secs(60));
        retention.publish(set(&["a", "b"]), t0);
        retention.publish(set(&["a"]), at(1));
        assert_eq!(kids(&retention.publish(set(&["a", "b"]), at(2))), ["a", "b"]);
    }

    #[test]
    fn without_retention_the_upstream_bytes_are_kept() {
        let mut retention = KeyRetention::new(Duration::ZERO);
        let upstream = Bytes::from_static(b"{ \"keys\" : [ {\"kty\":\"EC\",\"kid\":\"a\"} ] }");
        retention.publish(set(&["b"]), SystemTime::UNIX_EPOCH);
        assert_eq!(retention.publish(upstream.clone(), SystemTime::UNIX_EPOCH), upstream);
    }

    #[test]
    fn a_seeded_set_counts_as_published() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut retention = KeyRetention::new(Duration::from_secs(60));
        retention.seed(&set(&["old", "a"]));
        assert_eq!(kids(&retention.publish(set(&["a"]), t0)), ["a", "old"]);
    }
}
