//! The files ACME keeps in `cache_dir`: where they are, and reading and writing the
//! account, each certificate with its key, and each certificate's failed-order record.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use instant_acme::AccountCredentials;
use tracing::{info, warn};

use crate::cache::files::{self, write_atomically};
use crate::tls::acme::error::AcmeError;
use crate::tls::material::certified_key_from_pem;
use crate::tls::resolver::{CertError, ServerCert};

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache subdirectory for `directory`: its host (readable) and a hash (unique).
pub(super) fn directory_dir(cache_dir: &Path, directory: &str) -> PathBuf {
    let host: String = directory
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    cache_dir.join(format!("{host}-{}", short_hash(directory)))
}

/// Makes `dir` (inside `cache_dir`) private (the account key lives here) and checks that
/// it is writable now.
pub(super) fn prepare(cache_dir: &Path, dir: &Path) -> Result<(), AcmeError> {
    let probe = dir.join(".write-test");
    files::create_private_dir(cache_dir)
        .and_then(|()| files::create_private_dir(dir))
        .map(|()| files::remove_stale_temporaries(dir))
        .and_then(|_| write_atomically(&probe, b"", false))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| AcmeError::Cache {
            path: dir.to_owned(),
            source,
        })
}

/// The cache file of the certificate for `names`, whatever their order in the config.
pub(super) fn cache_file(dir: &Path, names: &[String]) -> PathBuf {
    let mut sorted = names.to_vec();
    sorted.sort();
    dir.join(format!("{}-{}.pem", sorted[0], short_hash(&sorted.join(","))))
}

fn account_file(dir: &Path) -> PathBuf {
    dir.join("account.json")
}

/// The cached account's credentials, `None` if none is cached.
pub(super) fn read_account(dir: &Path) -> Result<Option<AccountCredentials>, AcmeError> {
    let path = account_file(dir);
    match files::read_regular(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AcmeError::Account { path, source }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::Cache { path, source }),
    }
}

/// Caches a newly registered account; a failure is only logged.
pub(super) fn save_account(dir: &Path, credentials: &AccountCredentials) {
    let path = account_file(dir);
    let bytes = serde_json::to_vec_pretty(credentials).expect("credentials always serialise");
    if let Err(err) = write_atomically(&path, &bytes, true) {
        warn!(file = %path.display(), "cannot cache the ACME account; a restart will register another: {err}");
    }
}

/// Removes the cached account (the CA no longer knows it).
pub(super) fn forget_account(dir: &Path) -> Result<(), AcmeError> {
    let path = account_file(dir);
    std::fs::remove_file(&path).map_err(|source| AcmeError::Cache { path, source })
}

/// Caches a new certificate with its key (`text`, PEM) in `file`; a failure is only logged.
pub(super) fn save_certificate(file: &Path, text: &str) {
    if let Err(err) = write_atomically(file, text.as_bytes(), true) {
        // Served anyway: dropping an issued certificate would only order it again.
        warn!(file = %file.display(), "cannot cache the new certificate; a restart will order again: {err}");
    }
}

/// A cached certificate with its key, unexpired; anything else is ignored (and ordered
/// again), with a warning unless there is no file.
pub(super) fn load_certificate(file: &Path, now: SystemTime) -> Option<ServerCert> {
    let text = match files::read_regular_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            warn!(file = %file.display(), "cannot read the cached certificate, ordering a new one: {err}");
            return None;
        }
    };
    let loaded = certified_key_from_pem(&text, &text)
        .map_err(CertError::Load)
        .and_then(|key| ServerCert::new(key, file, now));
    match loaded {
        Ok(cert) => Some(cert),
        Err(err) => {
            warn!(
                file = %file.display(),
                "cached certificate unusable, ordering a new one: {}",
                crate::error_chain(&err)
            );
            None
        }
    }
}

/// Unexpired certificates in `dir`, other than the `owned` files, that cover some of
/// `domains`: those of an earlier domain list.
pub(super) fn load_leftovers(dir: &Path, owned: &[&Path], domains: &[String], now: SystemTime) -> Vec<ServerCert> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pem") && owned.iter().all(|file| *file != p))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|file| load_certificate(file, now))
        .filter(|cert| domains.iter().any(|d| cert.covers(d)))
        .inspect(|cert| {
            info!(
                file = %cert.cert_file.display(),
                names = ?cert.names,
                "serving a certificate of the previous domain list until the new one is issued"
            )
        })
        .collect()
}

/// What is remembered of failed orders across restarts (`<certificate>.retry.json`), so
/// that a restarting proxy keeps its backoff instead of spending the CA's limits.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct RetryState {
    pub(super) consecutive_failures: u32,
    pub(super) last_attempt_unix: u64,
    pub(super) next_attempt_unix: u64,
    pub(super) last_error: String,
}

/// The failed-order record of the certificate cached in `certificate`.
pub(super) fn retry_file(certificate: &Path) -> PathBuf {
    certificate.with_extension("retry.json")
}

/// The failed-order record in `file`, `None` if there is none or it cannot be read
/// (with a warning).
pub(super) fn read_retry_state(file: &Path) -> Option<RetryState> {
    let bytes = match files::read_regular(file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            warn!(file = %file.display(), "cannot read the failed-order record, ignoring it: {err}");
            return None;
        }
    };
    match serde_json::from_slice::<RetryState>(&bytes) {
        Ok(state) => Some(state),
        Err(err) => {
            warn!(file = %file.display(), "the failed-order record is corrupt, ignoring it: {err}");
            None
        }
    }
}

/// Writes the failed-order record; a failure is only logged.
pub(super) fn write_retry_state(file: &Path, state: &RetryState) {
    let bytes = serde_json::to_vec(state).expect("the retry state always serialises");
    if let Err(err) = write_atomically(file, &bytes, false) {
        warn!(file = %file.display(), "cannot record the failed order: {err}");
    }
}

/// Removes the failed-order record (the order succeeded); none there is fine.
pub(super) fn remove_retry_state(file: &Path) {
    let _ = std::fs::remove_file(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_directories_differ_per_ca_and_stay_readable() {
        let cache = Path::new("/var/lib/jwks-edge/acme");
        let production = directory_dir(cache, crate::config::LETS_ENCRYPT);
        let staging = directory_dir(cache, crate::config::LETS_ENCRYPT_STAGING);
        assert_ne!(production, staging);
        let name = production.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("acme-v02.api.letsencrypt.org-"), "{name}");
        assert_eq!(directory_dir(cache, "https://127.0.0.1:14000/dir"), {
            let hash = short_hash("https://127.0.0.1:14000/dir");
            cache.join(format!("127.0.0.1-{hash}"))
        });
    }

    #[test]
    fn the_cache_file_does_not_depend_on_the_order_of_domains() {
        let dir = Path::new("/cache");
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let file = cache_file(dir, &names(&["b.example", "a.example"]));
        assert_eq!(file, cache_file(dir, &names(&["a.example", "b.example"])));
        assert!(file.file_name().unwrap().to_str().unwrap().starts_with("a.example-"));
        assert_ne!(file, cache_file(dir, &names(&["a.example"])));
    }
}
