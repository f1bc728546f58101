//! Trust for the upstream connections: public roots, a private CA, a client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::client::ClientConfig;
use rustls::sign::CertifiedKey;

use crate::tls::material::{load_certified_key, provider, read_certs, TlsError};

/// Trust for upstream connections: the Mozilla roots (so the image needs no CA bundle),
/// plus `extra_ca` (a PEM bundle) for IdPs behind a private CA; and, for upstreams that
/// require mutual TLS, a client certificate (`client_auth`: chain and key files).
pub fn client_config(extra_ca: Option<&Path>, client_auth: Option<(&Path, &Path)>) -> Result<ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: path.to_owned(),
                source,
            })?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    match client_auth {
        None => Ok(config.with_no_client_auth()),
        Some((cert, key)) => {
            let certified = load_certified_key(cert, key)?;
            Ok(config.with_client_cert_resolver(Arc::new(ClientCert(Arc::new(certified)))))
        }
    }
}

/// The one client certificate offered to an upstream that asks for one.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
