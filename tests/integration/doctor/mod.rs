//! `jwks-edge doctor` against fake IdPs on loopback, with a test CA and test-time tokens.

//!
//! This file holds what every doctor test stands on: a TLS fake IdP with a test CA, an
//! RSA signer for its tokens, and the options or arguments that point the doctor at it.
//! The tests are split by what they exercise.

mod cli;
mod clouds;
mod issuer;
mod policy;
mod thumbprint;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use jwks_edge::doctor::{self, Options, Report, Status};
use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};
use jwks_edge::tls::resolver::{CertResolver, CertSet};
use jwks_edge::tls::{certified_key_from_pem, provider};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::*;

const HOST: &str = "idp.test";
const KEYS: &str = "/oauth/discovery/keys";

/// An RSA signing key with its public JWK.
struct Signer {
    pair: ring::signature::RsaKeyPair,
    jwk: Value,
}

impl Signer {
    fn new(kid: &str, bits: usize) -> Signer {
        use rsa::pkcs8::EncodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        });
        let pair = if bits >= 2048 {
            ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap()
        } else {
            // ring refuses keys under 2048 bits; such a signer only publishes its JWK.
            Signer::new("unused", 2048).pair
        };
        Signer { pair, jwk }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// A TLS fake IdP at https://idp.test:PORT with a certificate from `ca`.
struct Idp {
    idp: FakeIdp,
    issuer: String,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn idp_with(ca: &TestCa, issued: &Issued, signer: &Signer) -> Idp {
    idp_trusting(&ca.pem(), issued, signer).await
}

/// A TLS fake IdP serving `issued`'s chain, with `--ca-file` holding `root_pem`.
async fn idp_trusting(root_pem: &str, issued: &Issued, signer: &Signer) -> Idp {
    let key = certified_key_from_pem(&issued.chain_pem, &issued.key_pem).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(CertSet::single(key))));
    let idp = FakeIdp::serve_tls(TcpListener::bind("127.0.0.1:0").await.unwrap(), Arc::new(config)).unwrap();
    let issuer = format!("https://{HOST}:{}", idp.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, root_pem).unwrap();
    let idp = Idp {
        idp,
        issuer,
        ca_file,
        _dir: dir,
    };
    idp.serve_discovery(&idp.issuer, &[("cache-control", "public, max-age=300")]);
    idp.serve_keys(
        json!({"keys": [signer.jwk]}),
        &[("cache-control", "public, max-age=300")],
    );
    idp
}

async fn healthy(signer: &Signer) -> (TestCa, Idp) {
    let ca = TestCa::new("doctor test CA");
    let issued = ca.issue(&[HOST]);
    let idp = idp_with(&ca, &issued, signer).await;
    (ca, idp)
}

fn resource(body: String, headers: &[(&'static str, &'static str)]) -> Resource {
    Resource {
        body: Bytes::from(body),
        headers: headers
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v)))
            .collect(),
    }
}

impl Idp {
    fn serve_discovery(&self, issuer: &str, headers: &[(&'static str, &'static str)]) {
        self.serve_discovery_naming(issuer, &format!("{}{KEYS}", self.issuer), headers);
    }

    fn serve_discovery_naming(&self, issuer: &str, jwks_uri: &str, headers: &[(&'static str, &'static str)]) {
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        self.idp
            .put("/.well-known/openid-configuration", resource(doc.to_string(), headers));
    }

    fn serve_keys(&self, keys: Value, headers: &[(&'static str, &'static str)]) {
        self.idp.put(KEYS, resource(keys.to_string(), headers));
    }

    /// The command-line arguments that point doctor at this IdP (its CA, its address,
    /// loopback allowed), followed by `extra`.
    fn cli_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            self.issuer.clone(),
            "--ca-file".into(),
            self.ca_file.display().to_string(),
            "--resolve".into(),
            format!("{HOST}:{}:127.0.0.1", self.idp.addr().port()),
            "--allow-private".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    fn options(&self) -> Options {
        Options {
            issuer: self.issuer.clone(),
            token: None,
            audiences: vec!["sts.amazonaws.com".into()],
            ca_file: Some(self.ca_file.clone()),
            resolve: vec![format!("{HOST}:{}:127.0.0.1", self.idp.addr().port()).parse().unwrap()],
            timeout: Duration::from_secs(3),
            allow_private: true,
            assume_public: Vec::new(),
            jwks_fetches: 3,
            trust_policy: None,
            provider_audiences: Vec::new(),
            thumbprints: Vec::new(),
            cloud: doctor::Cloud::Aws,
        }
    }
}

fn status(report: &Report, id: &str) -> Status {
    report
        .get(id)
        .unwrap_or_else(|| panic!("no check {id} in\n{}", report.render(false)))
        .status
}

fn claims(issuer: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"iss": issuer, "sub": "project_path:group/app:ref_type:branch:ref:main", "aud": "sts.amazonaws.com",
           "iat": now, "nbf": now, "exp": now + 600})
}
