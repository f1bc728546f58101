//! `jwks-edge doctor` against fake IdPs on loopback, with a test CA and test-time tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use jwks_edge::certs::{CertResolver, CertSet};
use jwks_edge::doctor::{self, Options, Report, Status};
use jwks_edge::fake_idp::{FakeIdp, Fault, Resource};
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
    std::fs::write(&ca_file, ca.pem()).unwrap();
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
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": format!("{}{KEYS}", self.issuer),
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

    fn options(&self) -> Options {
        Options {
            issuer: self.issuer.clone(),
            token: None,
            audiences: vec!["sts.amazonaws.com".into()],
            ca_file: Some(self.ca_file.clone()),
            resolve: vec![format!("{HOST}:{}:127.0.0.1", self.idp.addr().port()).parse().unwrap()],
            timeout: Duration::from_secs(3),
            allow_private: true,
            jwks_fetches: 3,
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

#[tokio::test]
async fn a_healthy_issuer_passes() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let mut options = idp.options();
    options.token = Some(signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer)));
    let report = doctor::run(options).await;
    assert_ne!(report.worst(), Status::Fail, "{}", report.render(false));
    for id in [
        "tls.chain",
        "tls.expiry",
        "tls.versions",
        "tls.thumbprint",
        "discovery.issuer",
        "discovery.caching",
        "jwks.count",
        "jwks.rsa_size",
        "jwks.caching",
        "jwks.consistency",
        "token.iss",
        "token.kid",
        "token.signature",
        "token.exp",
        "token.aud",
        "token.sub",
    ] {
        assert_eq!(status(&report, id), Status::Pass, "{id}\n{}", report.render(false));
    }
    // The port in the test URL is the one expected warning.
    assert_eq!(status(&report, "url.port"), Status::Warn);
    // The key set was read at the document's jwks_uri, never at /.well-known/jwks.json.
    assert_eq!(idp.idp.hits("/.well-known/jwks.json"), 0);
    assert_eq!(idp.idp.hits(KEYS), 3);
}

#[tokio::test]
async fn issuer_side_failures_are_detected() {
    let signer = Signer::new("key-1", 2048);

    // No-cache headers on both documents.
    let (_ca, idp) = healthy(&signer).await;
    idp.serve_discovery(
        &idp.issuer,
        &[("cache-control", "no-cache, no-store"), ("pragma", "no-cache")],
    );
    idp.serve_keys(json!({"keys": [signer.jwk]}), &[("cache-control", "no-cache")]);
    let report = doctor::run(idp.options()).await;
    assert_eq!(status(&report, "discovery.caching"), Status::Warn);
    assert_eq!(status(&report, "jwks.caching"), Status::Warn);

    // Issuer mismatch; and the same URL asked with a trailing slash.
    idp.serve_discovery(&format!("{}/", idp.issuer), &[]);
    let report = doctor::run(idp.options()).await;
    assert_eq!(status(&report, "discovery.issuer"), Status::Fail);
    idp.serve_discovery(&idp.issuer, &[]);
    let mut options = idp.options();
    options.issuer = format!("{}/", idp.issuer);
    let report = doctor::run(options).await;
    assert_eq!(status(&report, "url.form"), Status::Warn);
    assert_eq!(status(&report, "discovery.issuer"), Status::Fail);

    // Empty, oversized, short-keyed key sets.
    idp.serve_keys(json!({"keys": []}), &[]);
    assert_eq!(status(&doctor::run(idp.options()).await, "jwks.count"), Status::Fail);
    let many: Vec<Value> = (0..101)
        .map(|i| {
            let mut k = signer.jwk.clone();
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .collect();
    idp.serve_keys(json!({ "keys": many }), &[]);
    assert_eq!(status(&doctor::run(idp.options()).await, "jwks.count"), Status::Fail);
    let short = Signer::new("short", 1024);
    idp.serve_keys(json!({"keys": [signer.jwk, short.jwk]}), &[]);
    let report = doctor::run(idp.options()).await;
    assert_eq!(status(&report, "jwks.rsa_size"), Status::Fail);
    assert!(report
        .get("jwks.rsa_size")
        .unwrap()
        .message
        .contains("short (1024 bits)"));

    // Slow answers: a warning over 1 s, a failure past the timeout.
    idp.serve_keys(json!({"keys": [signer.jwk]}), &[]);
    idp.idp.set_fault(Fault::Delay(Duration::from_millis(1200)));
    let mut options = idp.options();
    options.jwks_fetches = 1;
    let report = doctor::run(options.clone()).await;
    assert_eq!(
        status(&report, "discovery.latency"),
        Status::Warn,
        "{}",
        report.render(false)
    );
    options.timeout = Duration::from_millis(500);
    let report = doctor::run(options).await;
    assert_eq!(
        status(&report, "discovery.fetch"),
        Status::Fail,
        "{}",
        report.render(false)
    );
    idp.idp.set_fault(Fault::None);

    // A private address without --allow-private.
    let mut options = idp.options();
    options.allow_private = false;
    assert_eq!(status(&doctor::run(options).await, "dns.public"), Status::Fail);
}

#[tokio::test]
async fn untrusted_and_expired_certificates_fail() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let mut options = idp.options();
    options.ca_file = None; // the system roots do not know the test CA
    let report = doctor::run(options).await;
    assert_eq!(status(&report, "tls.chain"), Status::Fail, "{}", report.render(false));

    let ca = TestCa::new("doctor test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = Issued {
        chain_pem: ca.sign(params, &key),
        key_pem: key.serialize_pem(),
    };
    let idp = idp_with(&ca, &expired, &signer).await;
    let report = doctor::run(idp.options()).await;
    assert_eq!(status(&report, "tls.expiry"), Status::Fail, "{}", report.render(false));
    assert_eq!(status(&report, "tls.chain"), Status::Fail);
}

#[tokio::test]
async fn token_failures_are_detected() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let header = json!({"alg": "RS256", "kid": "key-1"});
    let check = |token: String| {
        let mut options = idp.options();
        options.token = Some(token);
        doctor::run(options)
    };

    let mut wrong_aud = claims(&idp.issuer);
    wrong_aud["aud"] = json!("https://gitlab.example.com");
    assert_eq!(
        status(&check(signer.sign(&header, &wrong_aud)).await, "token.aud"),
        Status::Fail
    );

    let mut expired = claims(&idp.issuer);
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() - 3600);
    assert_eq!(
        status(&check(signer.sign(&header, &expired)).await, "token.exp"),
        Status::Fail
    );

    let good = signer.sign(&header, &claims(&idp.issuer));
    let (rest, _) = good.rsplit_once('.').unwrap();
    let mut tampered_claims = claims(&idp.issuer);
    tampered_claims["sub"] = json!("someone-else");
    let (_, sig) = good.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}.{sig}",
        rest.split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string())
    );
    assert_eq!(status(&check(tampered).await, "token.signature"), Status::Fail);

    let unknown = signer.sign(&json!({"alg": "RS256", "kid": "rotated-away"}), &claims(&idp.issuer));
    let report = check(unknown).await;
    assert_eq!(status(&report, "token.kid"), Status::Fail);
    assert!(report.get("token.kid").unwrap().message.contains("rotated-away"));

    let mut wrong_iss = claims(&idp.issuer);
    wrong_iss["iss"] = json!("https://gitlab.internal");
    assert_eq!(
        status(&check(signer.sign(&header, &wrong_iss)).await, "token.iss"),
        Status::Fail
    );

    assert_eq!(status(&check("not a token".into()).await, "token.decode"), Status::Fail);
}

#[tokio::test]
async fn json_output_parses_and_matches_the_readable_report() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    idp.serve_discovery(&idp.issuer, &[("cache-control", "no-cache")]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let mut bad_aud = claims(&idp.issuer);
    bad_aud["aud"] = json!("other");
    std::fs::write(
        &token_file,
        signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &bad_aud),
    )
    .unwrap();
    let options = idp.options();
    let args = |json: bool| {
        let mut args = vec![
            "doctor".to_owned(),
            idp.issuer.clone(),
            "--ca-file".into(),
            options.ca_file.as_ref().unwrap().display().to_string(),
            "--resolve".into(),
            format!("{HOST}:{}:127.0.0.1", idp.idp.addr().port()),
            "--allow-private".into(),
            "--audience".into(),
            "sts.amazonaws.com".into(),
            "--token".into(),
            token_file.display().to_string(),
        ];
        if json {
            args.push("--json".into());
        }
        args
    };
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let text = run(args(false)).await.unwrap();
    let json_out = run(args(true)).await.unwrap();
    assert_eq!(text.status.code(), Some(1), "a failed check exits 1");
    assert_eq!(json_out.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    let doc: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(doc["status"], "fail");
    let checks = doc["checks"].as_array().unwrap();
    assert!(checks.len() > 20);
    for check in checks {
        let symbol = match check["status"].as_str().unwrap() {
            "pass" => "✓",
            "warn" => "!",
            "fail" => "✗",
            _ => "-",
        };
        let id = check["id"].as_str().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(symbol) && l.split_whitespace().nth(1) == Some(id)),
            "{symbol} {id} missing from\n{text}"
        );
        assert!(check["message"].is_string());
        if check["status"] == "fail" {
            assert!(check["fix"].is_string() && check["sts_error"].is_string(), "{check}");
        }
    }
    let aud = checks.iter().find(|c| c["id"] == "token.aud").unwrap();
    assert_eq!(aud["status"], "fail");
    assert!(aud["sts_error"].as_str().unwrap().contains("Incorrect token audience"));
    assert!(text.trim_end().lines().last().unwrap().starts_with("FAIL"));
    assert_eq!(
        doc["verdict"].as_str().unwrap(),
        text.trim_end().lines().last().unwrap()
    );
}

#[test]
fn doctor_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["doctor", "https://idp.test", "--ca-file", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no certificate"));
    let out = run(&["doctor", "https://idp.test", "--token", "/nonexistent/token"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["doctor", "https://idp.test", "--resolve", "idp.test:443"]);
    assert_eq!(out.status.code(), Some(2), "a malformed --resolve is a usage error");
    let out = run(&["doctor"]);
    assert_eq!(out.status.code(), Some(2));
}
