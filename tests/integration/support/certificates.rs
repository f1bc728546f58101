//! Certificates made at test time: a CA, the leaves it issues, and server certificate files.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// A certificate authority made at test time.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate chain and key, as PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// The leaf certificate (first in the chain).
    pub fn leaf(&self) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    /// Writes `<stem>.pem` and `<stem>-key.pem` into `dir`.
    pub fn write(&self, dir: &std::path::Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf for `names` (DNS names or IP addresses) signed with a fresh key of `alg`.
    pub fn issue_with(&self, names: &[&str], alg: &'static rcgen::SignatureAlgorithm, client: bool) -> Issued {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        self.issue_for_key(names, key, client)
    }

    pub fn issue_for_key(&self, names: &[&str], key: rcgen::KeyPair, client: bool) -> Issued {
        let names: Vec<String> = names.iter().map(|h| h.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            chain_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// Signs arbitrary parameters (an expired certificate, say) for `key`.
    pub fn sign(&self, params: rcgen::CertificateParams, key: &rcgen::KeyPair) -> String {
        let leaf = params.signed_by(key, &self.cert, &self.key).unwrap();
        format!("{}{}", leaf.pem(), self.cert.pem())
    }

    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(names, &rcgen::PKCS_ECDSA_P256_SHA256, false)
    }

    /// A client configuration that trusts only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A test CA and a server certificate for the given names, written to a temporary directory.
pub struct TestCerts {
    pub ca: TestCa,
    /// Holds the files; removed when the certificates are dropped.
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn for_hosts(hosts: &[&str]) -> TestCerts {
        let ca = TestCa::new("jwks-edge test CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue(hosts).write(dir.path(), "cert");
        TestCerts {
            ca,
            _dir: dir,
            cert,
            key,
        }
    }

    /// A client configuration that trusts only the test CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.ca.client_config(alpn)
    }
}
