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
        .contains("\"short\" (1024 bits)"));

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

    // A private address without --allow-private: refused before any connection, and
    // the token is still checked.
    let before = idp.idp.total_hits();
    let mut options = idp.options();
    options.allow_private = false;
    options.token = Some(signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer)));
    let report = doctor::run(options).await;
    let refusal = report.get("dns.public").unwrap();
    assert_eq!(refusal.status, Status::Fail, "{}", report.render(false));
    assert!(
        refusal.message.contains(&format!("{HOST} at 127.0.0.1 (loopback)")),
        "{}",
        refusal.message
    );
    assert!(refusal.fix.as_deref().unwrap().contains("--allow-private"));
    assert_eq!(
        idp.idp.total_hits(),
        before,
        "the doctor fetched from a refused address"
    );
    assert_eq!(status(&report, "discovery"), Status::Skip);
    assert_eq!(status(&report, "token.iss"), Status::Pass);
    assert_eq!(status(&report, "token.exp"), Status::Pass);
    assert_eq!(status(&report, "token.kid"), Status::Skip);
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
async fn okp_keys_are_counted_and_an_eddsa_token_is_explained_as_refused_by_sts() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let signer = Signer::new("rsa-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "use": "sig",
                     "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
    idp.serve_keys(
        json!({"keys": [signer.jwk, okp]}),
        &[("cache-control", "public, max-age=300")],
    );
    let header = json!({"alg": "EdDSA", "kid": "ed-1"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&idp.issuer).to_string())
    );
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(ed.sign(input.as_bytes()).as_ref()));
    let mut options = idp.options();
    options.token = Some(token.clone());
    let report = doctor::run(options).await;
    let text = report.render(false);

    let count = report.get("jwks.count").unwrap();
    assert_eq!(count.status, Status::Pass, "{text}");
    assert!(
        count.message.contains("2 keys: 1 RSA, 0 EC, 1 OKP"),
        "{}",
        count.message
    );
    let alg = report.get("token.alg").unwrap();
    assert_eq!(alg.status, Status::Fail, "{text}");
    assert!(
        alg.message.contains("EdDSA") && alg.message.contains("not accepted by AWS STS"),
        "{}",
        alg.message
    );
    assert_eq!(status(&report, "token.signature"), Status::Pass, "{text}");
    assert!(
        !text.contains("altered"),
        "a valid EdDSA signature is not a tampered token:\n{text}"
    );

    // A tampered EdDSA signature is still caught.
    let mut options = idp.options();
    let (head, _) = token.rsplit_once('.').unwrap();
    options.token = Some(format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 64])));
    assert_eq!(status(&doctor::run(options).await, "token.signature"), Status::Fail);
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
    let args = |json: bool| {
        let token = token_file.display().to_string();
        let mut args = vec!["doctor".to_owned()];
        args.extend(idp.cli_args(&["--audience", "sts.amazonaws.com", "--token", &token]));
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

/// Runs `jwks-edge doctor ARGS` to completion off the runtime (the fake IdPs live on it):
/// exit code, stdout bytes, stderr. Killed after 30 s: the doctor bounds every step.
async fn doctor_cli(args: Vec<String>) -> (Option<i32>, Vec<u8>, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let mut child = ChildProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_jwks-edge"))
                .arg("doctor")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut stdout_pipe = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout_pipe.read_to_end(&mut bytes);
            bytes
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let status = child.exit_within_blocking(Duration::from_secs(30), &format!("jwks-edge doctor {args:?} to exit"));
        (status.code(), stdout.join().unwrap(), stderr.join().unwrap())
    })
    .await
    .unwrap()
}

/// A listener that only counts the connections it is offered: where the doctor must not go.
struct Tripwire {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    async fn bind(ip: &str) -> Tripwire {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Tripwire {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The doctor's text and JSON outputs carry no byte a terminal would act on.
fn assert_terminal_safe(output: &[u8]) {
    let text = String::from_utf8(output.to_vec()).expect("the report is UTF-8");
    let bad: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    assert!(bad.is_empty(), "raw {bad:?} in\n{text}");
}

#[tokio::test]
async fn a_private_jwks_uri_is_refused_while_every_other_check_runs() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    // Where the discovery document sends the doctor: an internal host on a private address.
    let internal = Tripwire::bind("127.0.0.2").await;
    let port = internal.addr.port();
    let token = signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), &claims(&idp.issuer));
    let internal_uri = format!("https://keycloak.internal:{port}/realms/prod/protocol/openid-connect/certs");
    let cases = [
        (internal_uri.clone(), "keycloak.internal at 127.0.0.2 (loopback)"),
        (format!("https://127.0.0.2:{port}/keys"), "host 127.0.0.2 (loopback)"),
        (
            format!("https://[::ffff:127.0.0.2]:{port}/keys"),
            "host ::ffff:127.0.0.2 (loopback)",
        ),
    ];
    for (jwks_uri, named) in cases {
        idp.serve_discovery_naming(&idp.issuer, &jwks_uri, &[("cache-control", "no-cache")]);
        let mut options = idp.options();
        options.allow_private = false;
        // The IdP's own address stands in for a public one; nothing else does.
        options.assume_public = vec!["127.0.0.1".parse().unwrap()];
        options
            .resolve
            .push(format!("keycloak.internal:{port}:127.0.0.2").parse().unwrap());
        options.token = Some(token.clone());
        let report = doctor::run(options).await;
        let text = report.render(false);

        let refusal = report.get("jwks.public").unwrap_or_else(|| panic!("{text}"));
        assert_eq!(refusal.status, Status::Fail, "{text}");
        assert!(refusal.message.contains(named), "{jwks_uri}: {text}");
        assert!(refusal.fix.as_deref().unwrap().contains("--allow-private"));
        assert_eq!(status(&report, "jwks.fetch"), Status::Skip, "{text}");
        assert_eq!(internal.connections(), 0, "the doctor connected to {jwks_uri}");
        // Everything that needs no key set is still checked and reported.
        assert_eq!(status(&report, "dns.public"), Status::Pass, "{text}");
        for id in [
            "tls.chain",
            "discovery.issuer",
            "discovery.jwks_uri",
            "token.iss",
            "token.exp",
            "token.aud",
        ] {
            assert_eq!(status(&report, id), Status::Pass, "{id}\n{text}");
        }
        assert_eq!(status(&report, "discovery.caching"), Status::Warn, "{text}");
        assert_eq!(status(&report, "token.kid"), Status::Skip, "{text}");
    }

    // With --allow-private the same document does reach the internal host: the tripwire
    // above would have seen a connection had the refusal not held.
    let mut options = idp.options();
    options
        .resolve
        .push(format!("keycloak.internal:{port}:127.0.0.2").parse().unwrap());
    idp.serve_discovery_naming(&idp.issuer, &internal_uri, &[]);
    let report = doctor::run(options).await;
    assert_eq!(status(&report, "jwks.public"), Status::Pass, "{}", report.render(false));
    assert!(internal.connections() > 0);
}

#[tokio::test]
async fn hostile_remote_strings_are_escaped_in_both_reports() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let kid = "\x1b[31mevil\r\x1b]0;owned\x07";
    let mut hostile = signer.jwk.clone();
    hostile["kid"] = json!(kid);
    hostile["alg"] = json!("RS256\u{9b}2J\u{202e}");
    // Twice, so that the duplicate-kid check names it.
    idp.serve_keys(json!({"keys": [hostile, hostile]}), &[]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        signer.sign(
            &json!({"alg": "RS256", "kid": "\u{202e}gnp.exe\x1b[2J"}),
            &claims(&idp.issuer),
        ),
    )
    .unwrap();
    let args = |json: bool| {
        let mut args = idp.cli_args(&["--token", &token_file.display().to_string()]);
        if json {
            args.push("--json".into());
        }
        args
    };

    let (code, stdout, stderr) = doctor_cli(args(false)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_terminal_safe(&stdout);
    let text = String::from_utf8(stdout).unwrap();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no {id} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("jwks.kid").contains(r#""\x1b[31mevil\r\x1b]0;owned\x07""#),
        "{text}"
    );
    assert!(line("jwks.alg").contains(r#""RS256\u{009b}2J\u{202e}""#), "{text}");
    assert!(line("token.kid").contains(r#""\u{202e}gnp.exe\x1b[2J""#), "{text}");

    let (code, stdout, stderr) = doctor_cli(args(true)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_terminal_safe(&stdout);
    // The JSON document is escaped for the terminal, yet parses as valid JSON.
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    let kid_check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "jwks.kid")
        .unwrap();
    assert!(kid_check["message"].as_str().unwrap().contains("evil"));
}

#[tokio::test]
async fn a_plain_http_issuer_gets_every_problem_reported_in_one_run() {
    let idp = FakeIdp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let port = idp.addr().port();
    let issuer = format!("http://{HOST}:{port}");
    let signer = Signer::new("key-1", 2048);
    // GitLab before jwks-edge: no-cache headers, and an issuer that is not this URL.
    let discovery = json!({
        "issuer": format!("https://{HOST}"),
        "jwks_uri": format!("{issuer}{KEYS}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    idp.put(
        "/.well-known/openid-configuration",
        Resource::json_with_idp_headers(discovery.to_string()),
    );
    idp.put(
        KEYS,
        Resource::json_with_idp_headers(json!({"keys": [signer.jwk]}).to_string()),
    );

    let (code, stdout, stderr) = doctor_cli(vec![
        issuer.clone(),
        "--resolve".into(),
        format!("{HOST}:{port}:127.0.0.1"),
        "--allow-private".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    let status_of = |id: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {doc:#}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status_of("url.https"), "fail");
    assert_eq!(status_of("discovery.caching"), "warn");
    assert_eq!(status_of("discovery.issuer"), "fail");
    assert_eq!(status_of("discovery.jwks_uri"), "fail");
    assert_eq!(status_of("jwks.caching"), "warn");
    assert_eq!(status_of("jwks.count"), "pass");
    assert_eq!(status_of("tls.chain"), "skip");
    // Port 80 is not assumed for http: the doctor asked the IdP itself.
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits(KEYS), 3);
}

#[tokio::test]
async fn extreme_token_times_through_the_cli_do_not_panic() {
    let signer = Signer::new("key-1", 2048);
    let (_ca, idp) = healthy(&signer).await;
    let dir = tempfile::tempdir().unwrap();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "key-1"}).to_string());
    let cases = [
        // exp u64::MAX, iat 1e300, nbf below i64::MIN: valid until the end of time, and
        // issued in the far future (a failure, not a panic).
        (
            r#""exp":18446744073709551615,"iat":1e300,"nbf":-9223372036854775809"#.to_owned(),
            Some(1),
        ),
        (format!(r#""exp":{},"iat":-1e300"#, i64::MAX), Some(0)),
    ];
    for (times, expected) in cases {
        let claims = format!(
            r#"{{"iss":"{}","sub":"s","aud":"sts.amazonaws.com",{times}}}"#,
            idp.issuer
        );
        // Signed over the raw claims text, so that the numbers reach the doctor as written.
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&claims));
        let mut signature = vec![0u8; signer.pair.public().modulus_len()];
        signer
            .pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))).unwrap();
        let token = token_file.display().to_string();
        let args = idp.cli_args(&["--audience", "sts.amazonaws.com", "--token", &token]);
        let (code, stdout, stderr) = doctor_cli(args).await;
        let text = String::from_utf8(stdout).unwrap();
        assert!(!stderr.contains("panicked"), "{times}: {stderr}");
        assert_eq!(code, expected, "{times}:\n{text}\n{stderr}");
        let exp = text.lines().find(|l| l.contains("token.exp")).unwrap();
        assert!(
            exp.starts_with('✓') && exp.contains("after 9999-12-31T23:59:59Z"),
            "{exp}"
        );
        assert!(text.contains("token.signature"), "{text}");
    }
}
