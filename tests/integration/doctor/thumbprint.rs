//! Thumbprints of a chain made at test time (root, intermediate, leaf): the value doctor
//! computes is openssl's SHA-1 fingerprint of the intermediate, compared with
//! `--thumbprint`, and its expiry watched.

use super::*;

/// A private root, an intermediate under it that expires in 20 days, and a leaf for HOST
/// under the intermediate; the server sends leaf and intermediate, as servers do.
struct Chain {
    root_pem: String,
    intermediate_pem: String,
    issued: Issued,
}

fn chain() -> Chain {
    chain_for(HOST, "thumbprint test intermediate")
}

fn chain_for(host: &str, intermediate_name: &str) -> Chain {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let root_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "thumbprint test root");
    let root = params.self_signed(&root_key).unwrap();

    let intermediate_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, intermediate_name);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + (now + Duration::from_secs(20 * 86_400));
    let intermediate = params.signed_by(&intermediate_key, &root, &root_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = params.signed_by(&leaf_key, &intermediate, &intermediate_key).unwrap();
    Chain {
        root_pem: root.pem(),
        intermediate_pem: intermediate.pem(),
        issued: Issued {
            chain_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
            key_pem: leaf_key.serialize_pem(),
        },
    }
}

/// `openssl x509 -fingerprint -sha1` of a PEM certificate, as openssl prints it
/// (uppercase, colons).
fn openssl_sha1(pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for this test ({e}): run .ci/install-test-deps"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (_, fingerprint) = text.trim().split_once('=').expect("openssl prints NAME=FINGERPRINT");
    fingerprint.to_owned()
}

#[tokio::test]
async fn the_thumbprint_is_the_intermediates_sha1_and_is_compared_with_the_providers_list() {
    let signer = Signer::new("key-1", 2048);
    let chain = chain();
    let idp = idp_trusting(&chain.root_pem, &chain.issued, &signer).await;
    let expected = openssl_sha1(&chain.intermediate_pem);
    assert!(expected.contains(':'), "{expected}");
    let hex = expected.replace(':', "").to_ascii_lowercase();
    assert_ne!(hex, openssl_sha1(&chain.root_pem).replace(':', "").to_ascii_lowercase());
    let run = |thumbprints: Vec<String>| {
        let mut options = idp.options();
        options.thumbprints = thumbprints;
        doctor::run(options)
    };

    // Without a list: the value to register, and that IAM would use it (private CA).
    let report = run(Vec::new()).await;
    let text = report.render(false);
    assert_eq!(status(&report, "tls.chain"), Status::Pass, "{text}");
    let check = report.get("tls.thumbprint").unwrap();
    assert_eq!(check.status, Status::Pass, "{text}");
    assert!(check.message.contains(&hex), "{hex} not in {}", check.message);
    assert!(
        check.message.contains("thumbprint test intermediate"),
        "{}",
        check.message
    );
    assert!(
        check.message.contains("IAM validates it by the provider's thumbprints"),
        "{}",
        check.message
    );
    // The intermediate expires in 20 days: the chain is about to change.
    let expiry = report.get("tls.thumbprint_expiry").unwrap();
    assert_eq!(expiry.status, Status::Warn, "{text}");
    assert!(expiry.message.contains("day(s)"), "{}", expiry.message);

    // A match, typed as openssl prints it (uppercase, colons), among others.
    let report = run(vec!["00".repeat(20), expected.clone()]).await;
    assert_eq!(
        status(&report, "tls.thumbprint"),
        Status::Pass,
        "{}",
        report.render(false)
    );

    // A mismatch: the root's thumbprint (a common mistake), then a stale one.
    let stale = openssl_sha1(&chain.root_pem);
    let report = run(vec![stale.clone()]).await;
    let check = report.get("tls.thumbprint").unwrap();
    assert_eq!(check.status, Status::Fail, "{}", report.render(false));
    assert_eq!(check.sts_error, Some(doctor::Sts::Thumbprint));
    assert!(
        check.message.contains(&stale.replace(':', "").to_ascii_lowercase()),
        "{}",
        check.message
    );
    assert!(check.fix.as_ref().unwrap().contains(&hex));
}

#[tokio::test]
async fn a_key_set_on_another_host_gets_its_own_thumbprint() {
    let signer = Signer::new("key-1", 2048);
    let issuer_chain = chain();
    let idp = idp_trusting(&issuer_chain.root_pem, &issuer_chain.issued, &signer).await;
    let keys_chain = chain_for("keys.test", "key set intermediate");
    let key = certified_key_from_pem(&keys_chain.issued.chain_pem, &keys_chain.issued.key_pem).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(CertSet::single(key))));
    let keys_host = FakeIdp::serve_tls(TcpListener::bind("127.0.0.1:0").await.unwrap(), Arc::new(config)).unwrap();
    keys_host.put(KEYS, resource(json!({"keys": [signer.jwk]}).to_string(), &[]));
    let port = keys_host.addr().port();
    idp.serve_discovery_naming(&idp.issuer, &format!("https://keys.test:{port}{KEYS}"), &[]);

    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, format!("{}{}", issuer_chain.root_pem, keys_chain.root_pem)).unwrap();
    let issuer_hex = openssl_sha1(&issuer_chain.intermediate_pem)
        .replace(':', "")
        .to_ascii_lowercase();
    let keys_hex = openssl_sha1(&keys_chain.intermediate_pem)
        .replace(':', "")
        .to_ascii_lowercase();
    let mut options = idp.options();
    options.ca_file = Some(roots);
    options
        .resolve
        .push(format!("keys.test:{port}:127.0.0.1").parse().unwrap());
    // The provider lists the issuer's thumbprint only.
    options.thumbprints = vec![issuer_hex.clone()];
    let report = doctor::run(options).await;
    let text = report.render(false);
    assert_eq!(status(&report, "jwks.status"), Status::Pass, "{text}");
    let issuer = report.get("tls.thumbprint").unwrap();
    assert_eq!(issuer.status, Status::Pass, "{text}");
    assert!(issuer.message.contains(&issuer_hex), "{}", issuer.message);
    let keys = report.get("jwks.thumbprint").unwrap();
    assert_eq!(keys.status, Status::Fail, "{text}");
    assert!(
        keys.message.contains(&keys_hex) && keys.message.contains("jwks_uri's host keys.test"),
        "{}",
        keys.message
    );
}

#[test]
fn a_chain_to_a_private_root_is_not_publicly_trusted() {
    // Public means webpki-roots, whatever --ca-file trusts: IAM's view, not the doctor's.
    let chain = chain();
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(chain.issued.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!doctor::publicly_trusted(&certs, HOST, SystemTime::now()));
}
