//! The public listeners' rustls configuration: versions, ALPN, resumption.

use std::sync::Arc;

use rustls::server::ServerConfig;

use crate::tls::challenges::ACME_TLS_ALPN;
use crate::tls::material::{provider, TlsError};
use crate::tls::resolver::CertResolver;

/// TLS 1.2 and 1.3, ALPN `h2` then `http/1.1` (and `acme-tls/1` for TLS-ALPN-01
/// validation when `acme` is set), certificate from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>, acme: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        // Last: only a CA's validation handshake, offering nothing else, selects it.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Resumption both ways: a session cache for clients that use session IDs, and
    // tickets (keys rotated every 6 hours) so resumption also works across replicas'
    // restarts of the cache and costs no server memory.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}
