//! What the doctor finds on the issuer's side: documents, key sets, certificates, and
//! addresses it must refuse.

use super::*;

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
