//! What the benches share: the served key set, a test CA with an ECDSA P-256 leaf for
//! `HOST`, a Keycloak-shaped fake IdP, and a process's resident memory.

use std::path::PathBuf;

use jwks_edge::fake_idp::{FakeIdp, Resource};
use tokio::net::TcpListener;

pub mod rss;

pub const JWKS: &str = include_str!("../../tests/fixtures/keycloak/jwks.json");
pub const HOST: &str = "bench.example.com";
pub const PATH: &str = "/realms/bench/protocol/openid-connect/certs";

/// A CA and an ECDSA P-256 certificate for `HOST` (the cheaper handshake, as the README
/// advises), written as PEM files that live as long as this value.
pub struct BenchTls {
    pub ca: rcgen::Certificate,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl BenchTls {
    pub fn new() -> BenchTls {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![HOST.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
        BenchTls {
            ca,
            cert,
            key,
            _dir: dir,
        }
    }
}

/// A Keycloak-shaped fake IdP on loopback: the key set at `PATH`, on its backend URL.
pub async fn keycloak_idp() -> FakeIdp {
    let idp = FakeIdp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let backend = format!("{}/realms/bench", idp.base_url());
    let discovery =
        format!(r#"{{"issuer":"https://{HOST}/realms/bench","jwks_uri":"{backend}/protocol/openid-connect/certs"}}"#);
    idp.put(
        "/realms/bench/.well-known/openid-configuration",
        Resource::json_with_idp_headers(discovery),
    );
    idp.put(PATH, Resource::json_with_idp_headers(JWKS));
    idp
}
