//! Which CAs the doctor trusts: the `--ca-file` bundle, else the system's roots (webpki's
//! when the system has none).

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::CertificateDer;

/// Why the `--ca-file` bundle cannot be trusted. The message names the file; its cause's
/// text is part of the message, as the report prints it.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot read --ca-file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("--ca-file {} holds no certificate", .path.display())]
    Empty { path: PathBuf },
    #[error("--ca-file {}: {source}", .path.display())]
    Rejected {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The roots to verify the issuer's chain against.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, RootsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|source| RootsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            if certs.is_empty() {
                return Err(RootsError::Empty { path: path.to_owned() });
            }
            for cert in certs {
                roots.add(cert).map_err(|source| RootsError::Rejected {
                    path: path.to_owned(),
                    source,
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_bundle_says_why_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let empty = file("empty.pem", "");
        let err = roots(Some(&empty)).unwrap_err();
        assert!(matches!(err, RootsError::Empty { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("--ca-file {} holds no certificate", empty.display())
        );
        let garbage = file(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let err = roots(Some(&garbage)).unwrap_err();
        assert!(matches!(err, RootsError::Rejected { .. }), "{err}");
        let err = roots(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(matches!(err, RootsError::Read { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot read --ca-file "), "{err}");
    }
}
