//! Server certificates: every key type and encoding, hot reload, refused reloads, SNI.

use std::path::Path;
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

const GITLAB: &str = "gitlab.example.com";
const AUTH: &str = "auth.example.com";
const KEYS: &str = "/oauth/discovery/keys";

fn tls(ca: &TestCa, sni: &str) -> Transport {
    Transport::Tls {
        config: ca.client_config(&[b"http/1.1"]),
        sni: sni.to_owned(),
    }
}

fn rsa_key() -> (rcgen::KeyPair, rsa::RsaPrivateKey) {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    (rcgen::KeyPair::from_pem(&pem).unwrap(), key)
}

/// The key inside a PKCS#8 document, PEM-framed with `label` (SEC1 for EC, PKCS#1 for RSA).
fn unwrap_pkcs8(key: &rcgen::KeyPair, label: &str) -> String {
    let der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
    pem::encode(&pem::Pem::new(label, info.private_key.to_vec()))
}

#[tokio::test]
async fn every_key_type_and_encoding_serves() {
    let idp = gitlab_idp().await;
    let ca = TestCa::new("jwks-edge test CA");
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Issued)> = Vec::new();
    cases.push((
        "ECDSA P-256, PKCS#8",
        ca.issue_with(&[GITLAB], &rcgen::PKCS_ECDSA_P256_SHA256, false),
    ));
    cases.push((
        "ECDSA P-384, PKCS#8",
        ca.issue_with(&[GITLAB], &rcgen::PKCS_ECDSA_P384_SHA384, false),
    ));
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sec1 = unwrap_pkcs8(&ec, "EC PRIVATE KEY");
    let mut issued = ca.issue_for_key(&[GITLAB], ec, false);
    issued.key_pem = sec1;
    cases.push(("ECDSA P-256, SEC1", issued));
    cases.push(("Ed25519, PKCS#8", ca.issue_with(&[GITLAB], &rcgen::PKCS_ED25519, false)));
    let (rsa_pair, _) = rsa_key();
    cases.push(("RSA 2048, PKCS#8", ca.issue_for_key(&[GITLAB], rsa_pair, false)));
    let (rsa_pair, rsa_key) = rsa_key();
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        rsa_key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap().to_string()
    };
    let mut issued = ca.issue_for_key(&[GITLAB], rsa_pair, false);
    issued.key_pem = pkcs1;
    cases.push(("RSA 2048, PKCS#1", issued));

    for (i, (what, issued)) in cases.iter().enumerate() {
        let first_line = issued.key_pem.lines().next().unwrap();
        let (cert, key) = issued.write(dir.path(), &format!("case{i}"));
        let proxy = serving_files(&idp, &cert, &key).start().await;
        let mut conn = Conn::open(proxy.https.unwrap(), &tls(&ca, GITLAB)).await;
        assert_eq!(conn.peer_cert.as_ref(), Some(&issued.leaf()), "{what}");
        let status = conn.get(GITLAB, "/.well-known/openid-configuration").await.status;
        assert_eq!(status, StatusCode::OK, "{what} ({first_line})");
    }
}

/// A proxy for GitLab serving HTTPS with the certificate chain and key in these files.
fn serving_files(idp: &jwks_edge::fake_idp::FakeIdp, cert: &Path, key: &Path) -> ProxyBuilder {
    Proxy::builder().issuer(Issuer::gitlab(idp)).tls_files(cert, key)
}

/// Replaces a file the way operators and cert-manager do: write aside, then rename.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn served_cert(addr: std::net::SocketAddr, ca: &TestCa, sni: &str) -> rustls_pki_types::CertificateDer<'static> {
    Conn::open(addr, &tls(ca, sni)).await.peer_cert.unwrap()
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_a_broken_one_is_refused() {
    let idp = gitlab_idp().await;
    let ca = TestCa::new("jwks-edge test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&[GITLAB]);
    let (cert, key) = first.write(dir.path(), "server");
    let proxy = serving_files(&idp, &cert, &key).reload_interval("100ms").start().await;
    let addr = proxy.https.unwrap();
    let mut old_conn = Conn::open(addr, &tls(&ca, GITLAB)).await;
    assert_eq!(old_conn.peer_cert.as_ref(), Some(&first.leaf()));

    // A new certificate and key on disk: new connections get it, the old one goes on.
    let second = ca.issue(&[GITLAB]);
    replace(&key, &second.key_pem);
    replace(&cert, &second.chain_pem);
    eventually(Duration::from_secs(10), "the new certificate", async || {
        served_cert(addr, &ca, GITLAB).await == second.leaf()
    })
    .await;
    assert_eq!(old_conn.get(GITLAB, KEYS).await.status, StatusCode::OK);

    // Broken replacements: each is refused with a reason and the current one stays.
    let mismatched = ca.issue(&[GITLAB]);
    let expired = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![GITLAB.to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let leaf = ca.sign(params, &key);
        (leaf, key.serialize_pem())
    };
    let broken: [(&str, String, String, &str); 3] = [
        (
            "garbage",
            "not a certificate".into(),
            second.key_pem.clone(),
            "no certificate found",
        ),
        (
            "key of another certificate",
            second.chain_pem.clone(),
            mismatched.key_pem.clone(),
            "does not match",
        ),
        ("expired", expired.0, expired.1, "expired"),
    ];
    for (what, cert_text, key_text, reason) in broken {
        replace(&key, &key_text);
        replace(&cert, &cert_text);
        // At most 500 checks 20 ms apart, as before; the time limit backs that up.
        Wait::up_to(Duration::from_secs(30))
            .at_most(500)
            .until(&format!("{what}: {reason:?} in the reload error"), async || {
                let (_, body) = readyz(proxy.admin).await;
                let error = body["tls"]["last_reload_error"].as_str().unwrap_or_default();
                if error.contains(reason) {
                    Ok(())
                } else {
                    Err(format!("{error:?}"))
                }
            })
            .await;
        assert_eq!(served_cert(addr, &ca, GITLAB).await, second.leaf(), "{what}");
        // Put the good pair back so the next case changes the files again.
        replace(&key, &second.key_pem);
        replace(&cert, &second.chain_pem);
        eventually(Duration::from_secs(10), "the good pair accepted again", async || {
            readyz(proxy.admin).await.1["tls"]["last_reload_error"].is_null()
        })
        .await;
    }
}

#[tokio::test]
async fn sni_selects_among_several_certificates() {
    let idp = gitlab_idp().await;
    let ca = TestCa::new("jwks-edge test CA");
    let dir = tempfile::tempdir().unwrap();
    let gitlab = ca.issue(&[GITLAB]);
    let auth = ca.issue(&[AUTH, "*.auth.example.com"]);
    let (cert, key) = gitlab.write(dir.path(), "gitlab");
    let (auth_cert, auth_key) = auth.write(dir.path(), "auth");
    let proxy = serving_files(&idp, &cert, &key)
        .sni_certificate(&auth_cert, &auth_key)
        .start()
        .await;
    let addr = proxy.https.unwrap();
    assert_eq!(served_cert(addr, &ca, GITLAB).await, gitlab.leaf());
    assert_eq!(served_cert(addr, &ca, AUTH).await, auth.leaf());
    assert_eq!(served_cert(addr, &ca, "eu.auth.example.com").await, auth.leaf());
    let (_, body) = readyz(proxy.admin).await;
    assert_eq!(body["tls"]["certificates"].as_array().unwrap().len(), 2, "{body}");
    let mut conn = Conn::open(addr, &tls(&ca, GITLAB)).await;
    assert_eq!(conn.get(GITLAB, KEYS).await.status, StatusCode::OK);
}

#[tokio::test]
async fn tls_sessions_are_resumed() {
    let idp = gitlab_idp().await;
    let ca = TestCa::new("jwks-edge test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(&[GITLAB]).write(dir.path(), "server");
    let proxy = serving_files(&idp, &cert, &key).start().await;
    let addr = proxy.https.unwrap();
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let transport = Transport::Tls {
            config: std::sync::Arc::new(config),
            sni: GITLAB.to_owned(),
        };
        let mut first = Conn::open(addr, &transport).await;
        assert!(!first.resumed);
        // TLS 1.3 tickets arrive after the handshake; one exchange makes sure they did.
        first.get(GITLAB, KEYS).await;
        let second = Conn::open(addr, &transport).await;
        assert!(
            second.resumed,
            "{versions:?}: the second connection resumes the session"
        );
    }
}
