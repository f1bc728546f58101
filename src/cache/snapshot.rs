//! `Snapshots`: the last good answer of each document on disk, so a restart loses nothing.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cache::files::{self, write_atomically};
use crate::config::Issuer;
use crate::model::document::DocKind;
use crate::model::keys::SavedKey;
use crate::model::timestamp;

/// Format 1: the document alone. Format 2: a key set with its keys' history (first
/// seen, last seen upstream, removal time of retained keys, withdrawn), so that a
/// restart keeps every retention timer running. A reader of format 1 only would take
/// retained keys for current ones, so it must refuse format 2, and does.
const FORMAT_DOCUMENT: u32 = 1;
const FORMAT_WITH_KEYS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not a jwks-edge snapshot")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path:?} was written for another configuration ({what})")]
    Mismatch { path: PathBuf, what: &'static str },
    #[error("cannot write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is on disk: the document's source bytes with where and when they were fetched.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    format: u32,
    kind: String,
    /// The issuer's `public_url` and `upstream` when written; a snapshot of another
    /// issuer or another upstream is never served.
    issuer: String,
    upstream: String,
    fetched_at_unix_ms: u64,
    /// The upstream discovery document (rewritten again at load, under the current
    /// config), or the published key set.
    body: String,
    /// Format 2, key sets: the history of every key the body holds, and of withdrawn
    /// keys the upstream listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<SavedKey>>,
}

/// A snapshot read back from disk.
#[derive(Debug)]
pub struct Snapshot {
    pub body: Bytes,
    pub fetched_at: SystemTime,
    /// The keys' history, for a key set saved with one (format 2).
    pub keys: Option<Vec<SavedKey>>,
}

/// The `cache.state_dir` directory. Each file has exactly one writer: the refresher of
/// its document.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Creates the directory (0700) if needed, and removes temporary files a crash left.
    pub fn open(dir: &Path) -> std::io::Result<Snapshots> {
        files::create_private_dir(dir)?;
        files::remove_stale_temporaries(dir);
        Ok(Snapshots { dir: dir.to_owned() })
    }

    /// `<name>-<hash of public_url>.<kind>.json`: readable, and distinct per issuer even
    /// when two names sanitise alike.
    pub fn path(&self, issuer: &Issuer, kind: DocKind) -> PathBuf {
        let name: String = issuer
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, issuer.public_url.as_bytes());
        let hash: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}-{hash}.{}.json", kind.as_str()))
    }

    /// Writes atomically: a temporary file, fsync, rename over the old one, fsync of the
    /// directory. A crash leaves either the old snapshot or the new one, never a mix.
    pub fn save(
        &self,
        issuer: &Issuer,
        kind: DocKind,
        body: &[u8],
        fetched_at: SystemTime,
        keys: Option<&[SavedKey]>,
    ) -> Result<(), SnapshotError> {
        let path = self.path(issuer, kind);
        let envelope = Envelope {
            format: if keys.is_some() {
                FORMAT_WITH_KEYS
            } else {
                FORMAT_DOCUMENT
            },
            kind: kind.as_str().to_owned(),
            issuer: issuer.public_url.clone(),
            upstream: issuer.upstream.to_string(),
            fetched_at_unix_ms: timestamp::unix_millis(fetched_at),
            // Validated documents are JSON, hence UTF-8.
            body: String::from_utf8_lossy(body).into_owned(),
            keys: keys.map(<[SavedKey]>::to_vec),
        };
        let bytes = serde_json::to_vec(&envelope).expect("an envelope always serialises");
        write_atomically(&path, &bytes, false).map_err(|source| SnapshotError::Write {
            path: path.clone(),
            source,
        })
    }

    /// Reads a document's snapshot; `Ok(None)` when there is none.
    pub fn load(&self, issuer: &Issuer, kind: DocKind) -> Result<Option<Snapshot>, SnapshotError> {
        self.load_at(issuer, kind, SystemTime::now())
    }

    /// `load`, with a fetch time after `now` (a clock that was ahead, a corrupt file)
    /// counted as `now`.
    pub fn load_at(&self, issuer: &Issuer, kind: DocKind, now: SystemTime) -> Result<Option<Snapshot>, SnapshotError> {
        let path = self.path(issuer, kind);
        let bytes = match files::read_regular(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotError::Read { path, source }),
        };
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mismatch = if envelope.format != FORMAT_DOCUMENT && envelope.format != FORMAT_WITH_KEYS {
            Some("format")
        } else if envelope.kind != kind.as_str() {
            Some("kind")
        } else if envelope.issuer != issuer.public_url {
            Some("public_url")
        } else if envelope.upstream != issuer.upstream.to_string() {
            Some("upstream")
        } else {
            None
        };
        if let Some(what) = mismatch {
            return Err(SnapshotError::Mismatch { path, what });
        }
        let fetched_at = timestamp::from_unix_millis(envelope.fetched_at_unix_ms);
        Ok(Some(Snapshot {
            body: Bytes::from(envelope.body),
            // A clock that was ahead when writing must not make the copy look new forever.
            fetched_at: fetched_at.min(now),
            keys: envelope.keys.filter(|_| kind == DocKind::Jwks),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn issuers() -> Vec<Issuer> {
        let text = "[server]\nlisten_plain = \"127.0.0.1:1\"\n\
            [[issuer]]\nname = \"a/b\"\npublic_url = \"https://a.example/x\"\nupstream = \"http://a\"\n\
            [[issuer]]\nname = \"a_b\"\npublic_url = \"https://a.example/y\"\nupstream = \"http://a\"\n";
        Config::from_toml(text, Path::new(".")).unwrap().issuers
    }

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(&dir.path().join("state")).unwrap();
        let issuers = issuers();
        assert_ne!(
            snapshots.path(&issuers[0], DocKind::Jwks),
            snapshots.path(&issuers[1], DocKind::Jwks)
        );
        assert!(snapshots.load(&issuers[0], DocKind::Jwks).unwrap().is_none());

        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        snapshots
            .save(&issuers[0], DocKind::Jwks, br#"{"keys":[{"kty":"EC"}]}"#, at, None)
            .unwrap();
        let back = snapshots.load(&issuers[0], DocKind::Jwks).unwrap().unwrap();
        assert_eq!(&back.body[..], br#"{"keys":[{"kty":"EC"}]}"#);
        assert_eq!(back.fetched_at, at);
        // Overwriting leaves no temporary file behind.
        snapshots.save(&issuers[0], DocKind::Jwks, b"{}", at, None).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("state")).unwrap().count(), 1);

        // Another issuer's file under this issuer's name is refused.
        fs::copy(
            snapshots.path(&issuers[0], DocKind::Jwks),
            snapshots.path(&issuers[1], DocKind::Jwks),
        )
        .unwrap();
        let err = snapshots.load(&issuers[1], DocKind::Jwks).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Mismatch { what: "public_url", .. }),
            "{err}"
        );

        fs::write(snapshots.path(&issuers[0], DocKind::Discovery), b"\0garbage").unwrap();
        let err = snapshots.load(&issuers[0], DocKind::Discovery).unwrap_err();
        assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_key_set_keeps_its_keys_history_and_old_snapshots_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let issuer = &issuers()[0];
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let keys = vec![SavedKey {
            id: "kid:old".into(),
            kty: Some("RSA".into()),
            first_seen_unix_ms: 1_600_000_000_000,
            last_seen_upstream_unix_ms: 1_650_000_000_000,
            removed_at_unix_ms: Some(1_650_000_001_000),
            withdrawn: false,
        }];
        let body = br#"{"keys":[{"kty":"RSA","kid":"old"}]}"#;
        snapshots.save(issuer, DocKind::Jwks, body, at, Some(&keys)).unwrap();
        let path = snapshots.path(issuer, DocKind::Jwks);
        let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["format"], 2);
        let back = snapshots.load(issuer, DocKind::Jwks).unwrap().unwrap();
        assert_eq!(back.keys.as_deref(), Some(&keys[..]));
        assert_eq!(&back.body[..], body);

        // Format 1 (written before the history was kept) loads, without history.
        fs::write(&path, envelope_with_fetched_at("1700000000000")).unwrap();
        let old = snapshots.load(issuer, DocKind::Jwks).unwrap().unwrap();
        assert!(old.keys.is_none());
        // A format this build does not know is refused.
        fs::write(
            &path,
            envelope_with_fetched_at("1700000000000").replace("\"format\":1", "\"format\":3"),
        )
        .unwrap();
        let err = snapshots.load(issuer, DocKind::Jwks).unwrap_err();
        assert!(matches!(err, SnapshotError::Mismatch { what: "format", .. }), "{err}");
        // Discovery snapshots stay format 1.
        snapshots.save(issuer, DocKind::Discovery, b"{}", at, None).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(snapshots.path(issuer, DocKind::Discovery)).unwrap()).unwrap();
        assert_eq!(written["format"], 1);
        assert!(written.get("keys").is_none());
    }

    /// A snapshot of `issuers()[0]`'s key set whose `fetched_at_unix_ms` is `raw` JSON.
    fn envelope_with_fetched_at(raw: &str) -> String {
        let issuer = &issuers()[0];
        format!(
            r#"{{"format":1,"kind":"jwks","issuer":"{}","upstream":"{}","fetched_at_unix_ms":{raw},"body":"{{}}"}}"#,
            issuer.public_url, issuer.upstream
        )
    }

    #[test]
    fn the_directory_is_private_and_a_planted_link_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let snapshots = Snapshots::open(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);

        // A valid snapshot elsewhere, linked in at this issuer's name, is not served.
        let outside = dir.path().join("elsewhere.json");
        fs::write(&outside, envelope_with_fetched_at("1700000000000")).unwrap();
        let path = snapshots.path(&issuers()[0], DocKind::Jwks);
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let err = snapshots.load(&issuers()[0], DocKind::Jwks).unwrap_err();
        assert!(matches!(err, SnapshotError::Read { .. }), "{err}");
        assert!(crate::error_chain(&err).contains("symbolic link"), "{err}");

        // Saving replaces the link; the file it pointed to is untouched.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        snapshots.save(&issuers()[0], DocKind::Jwks, b"{}", at, None).unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            fs::read_to_string(&outside).unwrap(),
            envelope_with_fetched_at("1700000000000")
        );
        assert_eq!(
            snapshots
                .load(&issuers()[0], DocKind::Jwks)
                .unwrap()
                .unwrap()
                .fetched_at,
            at
        );
    }

    #[test]
    fn a_crash_s_temporary_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a-0011.jwks.json.tmp.1"), b"half").unwrap();
        fs::write(dir.path().join("a-0011.jwks.json.tmp.00ff00ff00ff00ff"), b"half").unwrap();
        Snapshots::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn raw_fetched_at() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just(u64::MAX.to_string()),
            // Year 10000 and beyond, in milliseconds.
            (253_402_300_800_000u64..=u64::MAX).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[0-9]{20,60}",
            "-?[0-9]{1,5}e[0-9]{1,4}",
            Just("null".to_owned()),
            "\"[0-9a-z:-]{0,30}\"",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_fetched_at_loads_no_later_than_now_or_is_refused(raw in raw_fetched_at()) {
            let dir = tempfile::tempdir().unwrap();
            let snapshots = Snapshots::open(dir.path()).unwrap();
            let issuer = &issuers()[0];
            fs::write(snapshots.path(issuer, DocKind::Jwks), envelope_with_fetched_at(&raw)).unwrap();
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            match snapshots.load_at(issuer, DocKind::Jwks, now) {
                Ok(Some(snapshot)) => {
                    prop_assert!(snapshot.fetched_at <= now);
                    let text = timestamp::rfc3339_seconds(snapshot.fetched_at).to_string();
                    prop_assert!(humantime::parse_rfc3339(&text).is_ok());
                }
                Ok(None) => prop_assert!(false, "the file is there"),
                Err(err) => prop_assert!(matches!(err, SnapshotError::Corrupt { .. }), "{}", err),
            }
        }
    }
}
