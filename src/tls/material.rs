//! Certificates and keys from PEM, checked to match, and the one crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM certificates from {path:?}")]
    ReadCerts {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate found in {path:?}")]
    NoCerts { path: PathBuf },
    #[error("cannot read a PEM private key from {path:?}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("unsupported private key in {path:?}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the key in {key:?} does not match the certificate in {cert:?}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot add a CA certificate from {path:?}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
}

/// The one crypto provider the process uses (ring: no C toolchain beyond cc needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ReadCerts {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts { path: path.to_owned() });
    }
    Ok(certs)
}

/// Loads a PEM chain (leaf first) and its key (PKCS#8, PKCS#1 or SEC1) and checks they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    certified_key(chain, key_der).map_err(|err| match err {
        KeyError::Unsupported(source) => TlsError::BadKey {
            path: key.to_owned(),
            source,
        },
        KeyError::Mismatch => TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
    })
}

enum KeyError {
    Unsupported(rustls::Error),
    Mismatch,
}

fn certified_key(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<CertifiedKey, KeyError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(KeyError::Unsupported)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The key's public half could not be derived; rustls cannot tell, so accept.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(KeyError::Mismatch),
    }
}

/// Builds a `CertifiedKey` from PEM text (the demo and tests generate theirs in memory).
pub fn certified_key_from_pem(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let pem_path = PathBuf::from("<memory>");
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ReadCerts {
            path: pem_path.clone(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| TlsError::ReadKey {
        path: pem_path.clone(),
        source,
    })?;
    certified_key(chain, key).map_err(|_| TlsError::Mismatch {
        cert: pem_path.clone(),
        key: pem_path,
    })
}
