//! `Snapshots`: the last good answer of each document on disk, so a restart loses nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::Issuer;
use crate::document::DocKind;

const FORMAT: u32 = 1;

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
}

/// A snapshot read back from disk.
#[derive(Debug)]
pub struct Snapshot {
    pub body: Bytes,
    pub fetched_at: SystemTime,
}

/// The `cache.state_dir` directory. Each file has exactly one writer: the refresher of
/// its document.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Creates the directory if needed.
    pub fn open(dir: &Path) -> std::io::Result<Snapshots> {
        fs::create_dir_all(dir)?;
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
    ) -> Result<(), SnapshotError> {
        let path = self.path(issuer, kind);
        let envelope = Envelope {
            format: FORMAT,
            kind: kind.as_str().to_owned(),
            issuer: issuer.public_url.clone(),
            upstream: issuer.upstream.to_string(),
            fetched_at_unix_ms: fetched_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            // Validated documents are JSON, hence UTF-8.
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let bytes = serde_json::to_vec(&envelope).expect("an envelope always serialises");
        write_atomically(&path, &bytes, false).map_err(|source| SnapshotError::Write {
            path: path.clone(),
            source,
        })
    }

    /// Reads a document's snapshot; `Ok(None)` when there is none.
    pub fn load(&self, issuer: &Issuer, kind: DocKind) -> Result<Option<Snapshot>, SnapshotError> {
        let path = self.path(issuer, kind);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotError::Read { path, source }),
        };
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mismatch = if envelope.format != FORMAT {
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
        let fetched_at = SystemTime::UNIX_EPOCH + Duration::from_millis(envelope.fetched_at_unix_ms);
        Ok(Some(Snapshot {
            body: Bytes::from(envelope.body),
            // A clock that was ahead when writing must not make the copy look new forever.
            fetched_at: fetched_at.min(SystemTime::now()),
        }))
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file beside it, fsync, rename over, fsync of the directory.
/// `private` files (keys) are created readable by the owner only.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
            .save(&issuers[0], DocKind::Jwks, br#"{"keys":[{"kty":"EC"}]}"#, at)
            .unwrap();
        let back = snapshots.load(&issuers[0], DocKind::Jwks).unwrap().unwrap();
        assert_eq!(&back.body[..], br#"{"keys":[{"kty":"EC"}]}"#);
        assert_eq!(back.fetched_at, at);
        // Overwriting leaves no temporary file behind.
        snapshots.save(&issuers[0], DocKind::Jwks, b"{}", at).unwrap();
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
}
