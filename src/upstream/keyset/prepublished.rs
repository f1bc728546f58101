//! `PrepublishedKeys`: an issuer's own JWKS file, whose public signing keys are published beside the upstream's, re-read when it changes.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::config::keys::KeyCap;
use crate::error_chain;
use crate::upstream::keyset::hygiene::{describe, is_public_signing_key, private_member, KeyError};

/// What is wrong with a pre-published key file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("cannot be read")]
    Read(#[source] std::io::Error),
    #[error("is not a regular file")]
    NotRegular,
    #[error("is larger than {0} bytes (cache.max_document_bytes)")]
    TooLarge(usize),
    #[error("is not JSON ({0})")]
    NotJson(String),
    #[error("is not a JWK set: expected an object with a `keys` array")]
    NotKeySet,
    #[error("keys[{0}] is not an object with a string `kty`")]
    BadKey(usize),
    #[error(transparent)]
    Key(KeyError),
    #[error(
        "{0} is not a public signing key a relying party can use (RSA with `n` and `e`, EC with `crv`, `x` and `y`, \
         or OKP Ed25519/Ed448 with `x`; not `use: enc`)"
    )]
    NotSigningKey(String),
    #[error("{0} has no `kid`: relying parties pick keys by `kid`, and pre-published keys are matched to the upstream's by it")]
    NoKid(String),
    #[error("{0} repeats the `kid` of an earlier key")]
    DuplicateKid(String),
}

/// A pre-published key file that cannot be used, and why. At start-up this stops the
/// start; on a reload the previous keys stay published.
#[derive(Debug, thiserror::Error)]
#[error("pre-published key file {path:?}")]
pub struct PrepublishedError {
    pub path: PathBuf,
    #[source]
    pub problem: FileProblem,
}

/// The public signing keys of a pre-published key file, validated as strictly as an
/// upstream set and more: every key must be a public signing key with a unique `kid`,
/// since signing keys are the only reason to pre-publish one. An empty `keys` array is
/// valid: nothing is pre-published between rotations.
pub fn parse(body: &[u8], cap: &KeyCap) -> Result<Vec<Value>, FileProblem> {
    let value: Value = serde_json::from_slice(body).map_err(|e| FileProblem::NotJson(e.to_string()))?;
    let Some(Value::Array(keys)) = value.get("keys") else {
        return Err(FileProblem::NotKeySet);
    };
    let mut kids = HashSet::new();
    for (index, key) in keys.iter().enumerate() {
        if !key.get("kty").is_some_and(Value::is_string) {
            return Err(FileProblem::BadKey(index));
        }
        if let Some(member) = private_member(key) {
            return Err(FileProblem::Key(KeyError::PrivateMember {
                key: describe(index, key),
                member,
            }));
        }
        if !is_public_signing_key(key) {
            return Err(FileProblem::NotSigningKey(describe(index, key)));
        }
        let Some(kid) = key.get("kid").and_then(Value::as_str) else {
            return Err(FileProblem::NoKid(describe(index, key)));
        };
        if !kids.insert(kid) {
            return Err(FileProblem::DuplicateKid(describe(index, key)));
        }
    }
    cap.check(keys, keys.len()).map_err(FileProblem::Key)?;
    Ok(keys.clone())
}

/// Reads a regular file of at most `max_bytes` (following links: a Kubernetes ConfigMap
/// or Secret is a link to a link). Neither a FIFO nor `/dev/zero` can block or exhaust
/// the refresher.
fn read_bounded(path: &Path, max_bytes: usize) -> Result<Vec<u8>, FileProblem> {
    let meta = std::fs::metadata(path).map_err(FileProblem::Read)?;
    if !meta.is_file() {
        return Err(FileProblem::NotRegular);
    }
    if meta.len() > max_bytes as u64 {
        return Err(FileProblem::TooLarge(max_bytes));
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max_bytes as u64 + 1).read_to_end(&mut body))
        .map_err(FileProblem::Read)?;
    if body.len() > max_bytes {
        return Err(FileProblem::TooLarge(max_bytes));
    }
    Ok(body)
}

/// What a reload found.
#[derive(Debug)]
pub enum Reload {
    /// The same content (or the same failure) as last time: nothing to say.
    Unchanged,
    /// New content, now published: this many keys.
    Reloaded(usize),
    /// New content or a new failure; the previous keys stay.
    Refused(PrepublishedError),
}

/// What the file held when last read: the content, or why it could not be read.
#[derive(PartialEq, Eq)]
enum Seen {
    Content(Vec<u8>),
    Failure(String),
}

struct State {
    keys: Arc<Vec<Value>>,
    seen: Seen,
}

/// One issuer's pre-published key file and the keys last read from it.
pub struct PrepublishedKeys {
    path: PathBuf,
    max_bytes: usize,
    cap: KeyCap,
    /// Written by reloads, which only the issuer's key set refresher runs; read by it and
    /// by the snapshot restore, which runs before it starts. Never held across an await.
    state: Mutex<State>,
}

impl PrepublishedKeys {
    /// Reads and validates the file; any problem is an error, so a bad file stops the start.
    pub fn load(path: &Path, max_bytes: usize, cap: KeyCap) -> Result<PrepublishedKeys, PrepublishedError> {
        let error = |problem| PrepublishedError {
            path: path.to_owned(),
            problem,
        };
        let body = read_bounded(path, max_bytes).map_err(error)?;
        let keys = parse(&body, &cap).map_err(error)?;
        Ok(PrepublishedKeys {
            path: path.to_owned(),
            max_bytes,
            cap,
            state: Mutex::new(State {
                keys: Arc::new(keys),
                seen: Seen::Content(body),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys to publish now: those of the last good content of the file.
    pub fn keys(&self) -> Arc<Vec<Value>> {
        self.state().keys.clone()
    }

    /// Re-reads the file (small, so comparing contents is cheap, and unlike an mtime it
    /// also sees a change within one timestamp tick or a ConfigMap's link swap).
    pub async fn reload(&self) -> Reload {
        let (path, max_bytes) = (self.path.clone(), self.max_bytes);
        let read = tokio::task::spawn_blocking(move || read_bounded(&path, max_bytes))
            .await
            .unwrap_or_else(|e| Err(FileProblem::Read(std::io::Error::other(e.to_string()))));
        self.take(read)
    }

    /// Takes the outcome of one read: new valid content replaces the keys, anything else
    /// leaves them, and only a change is reported.
    fn take(&self, read: Result<Vec<u8>, FileProblem>) -> Reload {
        let mut state = self.state();
        let error = |problem| {
            Reload::Refused(PrepublishedError {
                path: self.path.clone(),
                problem,
            })
        };
        let body = match read {
            Ok(body) => body,
            Err(problem) => {
                let failure = Seen::Failure(error_chain(&problem));
                if state.seen == failure {
                    return Reload::Unchanged;
                }
                state.seen = failure;
                return error(problem);
            }
        };
        if state.seen == Seen::Content(body.clone()) {
            return Reload::Unchanged;
        }
        let parsed = parse(&body, &self.cap);
        state.seen = Seen::Content(body);
        match parsed {
            Ok(keys) => {
                let count = keys.len();
                state.keys = Arc::new(keys);
                Reload::Reloaded(count)
            }
            Err(problem) => error(problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXT: &str = r#"{"keys":[{"kty":"EC","kid":"next","crv":"P-256","x":"AA","y":"AA"}]}"#;

    fn reason(body: &str) -> String {
        let err = parse(body.as_bytes(), &KeyCap::default()).unwrap_err();
        error_chain(&err)
    }

    #[test]
    fn a_valid_file_gives_its_keys_and_an_empty_one_gives_none() {
        let keys = parse(NEXT.as_bytes(), &KeyCap::default()).unwrap();
        assert_eq!(keys[0]["kid"], "next");
        assert!(parse(br#"{"keys":[]}"#, &KeyCap::default()).unwrap().is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let cases = [
            ("", "is not JSON"),
            ("[1]", "expected an object with a `keys` array"),
            (r#"{"keys":{}}"#, "expected an object with a `keys` array"),
            (
                r#"{"keys":[{"kid":"a"}]}"#,
                "keys[0] is not an object with a string `kty`",
            ),
            (
                r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB","d":"secret"}]}"#,
                r#"keys[0] (kid "a") holds the private member `d`"#,
            ),
            (
                r#"{"keys":[{"kty":"oct","kid":"h"}]}"#,
                r#"keys[0] (kid "h") is not a public signing key"#,
            ),
            (
                r#"{"keys":[{"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}]}"#,
                r#"keys[0] (kid "e") is not a public signing key"#,
            ),
            (
                r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#,
                "keys[0] (no kid) has no `kid`",
            ),
            (
                r#"{"keys":[{"kty":"OKP","kid":"a","crv":"Ed25519","x":"AA"},{"kty":"OKP","kid":"a","crv":"Ed25519","x":"AB"}]}"#,
                r#"keys[1] (kid "a") repeats the `kid`"#,
            ),
        ];
        for (body, expected) in cases {
            let reason = reason(body);
            assert!(reason.contains(expected), "{body}: {reason}");
            assert!(!reason.contains("secret"), "{reason}");
        }
        let cap = KeyCap {
            ec: 1,
            ..KeyCap::default()
        };
        let two = r#"{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"},{"kty":"EC","kid":"b","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let err = parse(two.as_bytes(), &cap).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 EC keys to publish (2 of them pre-published)"),
            "{err}"
        );
    }

    #[test]
    fn loading_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next.json");
        std::fs::write(
            &path,
            r#"{"keys":[{"kty":"EC","kid":"x","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}"#,
        )
        .unwrap();
        let err = PrepublishedKeys::load(&path, 1 << 20, KeyCap::default()).err().unwrap();
        let text = error_chain(&err);
        assert!(
            text.starts_with(&format!("pre-published key file {path:?}: ")),
            "{text}"
        );
        assert!(
            text.contains(r#"keys[0] (kid "x") holds the private member `d`"#),
            "{text}"
        );
        let missing = PrepublishedKeys::load(&dir.path().join("none.json"), 1 << 20, KeyCap::default());
        assert!(error_chain(&missing.err().unwrap()).contains("cannot be read: "));
        let dir_err = PrepublishedKeys::load(dir.path(), 1 << 20, KeyCap::default())
            .err()
            .unwrap();
        assert!(error_chain(&dir_err).ends_with("is not a regular file"));
        std::fs::write(&path, vec![b' '; 2048]).unwrap();
        let large = PrepublishedKeys::load(&path, 1024, KeyCap::default()).err().unwrap();
        assert!(error_chain(&large).contains("is larger than 1024 bytes"));
    }

    #[tokio::test]
    async fn reloads_take_new_good_content_keep_the_keys_on_bad_content_and_report_each_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next.json");
        std::fs::write(&path, NEXT).unwrap();
        let keys = PrepublishedKeys::load(&path, 1 << 20, KeyCap::default()).unwrap();
        assert!(matches!(keys.reload().await, Reload::Unchanged));

        let two = r#"{"keys":[{"kty":"EC","kid":"next","crv":"P-256","x":"AA","y":"AA"},{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"AA"}]}"#;
        std::fs::write(&path, two).unwrap();
        assert!(matches!(keys.reload().await, Reload::Reloaded(2)));
        assert!(matches!(keys.reload().await, Reload::Unchanged));

        std::fs::write(&path, r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#).unwrap();
        match keys.reload().await {
            Reload::Refused(err) => assert!(error_chain(&err).contains("private member `k`"), "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(keys.reload().await, Reload::Unchanged),
            "the same bad content is reported once"
        );
        assert_eq!(keys.keys().len(), 2, "the previous keys stay");

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(keys.reload().await, Reload::Refused(_)));
        assert!(matches!(keys.reload().await, Reload::Unchanged));
        assert_eq!(keys.keys().len(), 2);

        std::fs::write(&path, NEXT).unwrap();
        assert!(matches!(keys.reload().await, Reload::Reloaded(1)));
        assert_eq!(keys.keys()[0]["kid"], "next");
    }
}
