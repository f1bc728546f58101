//! TLS handshakes alone, as a CA's validation makes them: which certificate a listener
//! presents, whatever it is.

use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;

use crate::support::{Transport, IO_TIMEOUT};

/// A TLS handshake alone; the server's leaf certificate when it succeeds.
pub async fn try_handshake(addr: SocketAddr, transport: &Transport) -> std::io::Result<CertificateDer<'static>> {
    let Transport::Tls { config, sni } = transport else {
        unreachable!()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = rustls_pki_types::ServerName::try_from(sni.clone()).unwrap();
    let tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    Ok(leaf
        .expect("a completed handshake has a certificate")
        .clone()
        .into_owned())
}

/// Accepts any server certificate.
#[derive(Debug)]
pub struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        jwks_edge::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
