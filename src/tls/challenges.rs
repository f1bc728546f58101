//! The challenge answers a CA's validation reads: TLS-ALPN-01 certificates, picked by the
//! resolver for `acme-tls/1` handshakes, and HTTP-01 key authorizations, served by the
//! plain listener. ACME writes them; nothing here knows how an order runs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

use crate::tls::material::provider;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 answers (RFC 8555 section 8.3).
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Challenge answers currently published: read by handshakes and the plain listener,
/// written by the order in progress.
#[derive(Debug, Default)]
pub struct Challenges {
    /// TLS-ALPN-01: domain → self-signed certificate carrying the acmeIdentifier.
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: token → key authorization.
    http: RwLock<HashMap<String, String>>,
}

impl Challenges {
    pub fn tls_alpn(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.tls_alpn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned()
    }

    /// The key authorization to answer `GET /.well-known/acme-challenge/{token}` with.
    pub fn http(&self, token: &str) -> Option<String> {
        self.http.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    /// Publishes the TLS-ALPN-01 answer for `domain`: a self-signed certificate carrying
    /// `digest` (the key authorization's SHA-256) in its acmeIdentifier extension.
    pub fn answer_tls_alpn(&self, domain: &str, digest: &[u8]) -> Result<(), rcgen::Error> {
        let cert = challenge_certificate(domain, digest)?;
        self.tls_alpn
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), Arc::new(cert));
        Ok(())
    }

    /// Publishes the HTTP-01 answer for `token`.
    pub fn answer_http(&self, token: &str, key_authorization: &str) {
        self.http
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Withdraws every answer (an order has ended).
    pub fn clear(&self) {
        self.tls_alpn.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.http.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    // Not through `certified_key_from_pem`: its key check parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension it does not know.
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let signing_key = provider()
        .key_provider
        .load_private_key(der.into())
        .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}
