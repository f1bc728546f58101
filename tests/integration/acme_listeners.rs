//! The listeners' side of ACME, without an order: HTTPS with no certificate yet, and a
//! CA's validation handshake, which gets the challenge certificate and never a request.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use tokio::net::{TcpListener, TcpSocket};

use crate::support::*;

use crate::acme::*;
#[tokio::test]
async fn without_a_certificate_https_refuses_readyz_says_missing_and_plain_serves() {
    // No CA answers (bound, never listening: connections are refused): nothing cached,
    // the first order fails.
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let directory = format!("https://{}/dir", closed.local_addr().unwrap());
    let setup = Setup::new().await;
    let proxy = setup.start_with(listen(0), listen(0), &directory, "").await;
    until_served(proxy.plain.unwrap(), GITLAB, DISCOVERY).await;
    eventually(ISSUANCE, "the failed order to be counted", async || {
        orders(proxy.admin, "failed").await == 1
    })
    .await;
    let (status, certs) = acme_certificates(proxy.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no certificate: not ready");
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["state"], "missing");
    assert_eq!(certs[0]["names"], serde_json::json!([GITLAB, AUTH]));
    assert!(certs[0]["last_error"].as_str().unwrap().contains("Connection refused"));
    let any_cert = any_certificate(b"http/1.1");
    assert!(try_handshake(proxy.https.unwrap(), &any_cert).await.is_err());
    proxy.shutdown().await;
}

/// Counts the requests that reach it.
struct Counting(Arc<std::sync::atomic::AtomicUsize>);

impl jwks_edge::edge::connection::Handler for Counting {
    fn handle(
        &self,
        _: http::Request<hyper::body::Incoming>,
        _: jwks_edge::edge::connection::ConnInfo,
    ) -> impl std::future::Future<Output = http::Response<jwks_edge::edge::connection::Body>> + Send {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { http::Response::new(Default::default()) }
    }
}

#[tokio::test]
async fn a_validation_handshake_gets_the_challenge_certificate_and_no_request_through() {
    use jwks_edge::tls::challenges::Challenges;
    use jwks_edge::tls::resolver::{CertResolver, CertSet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let digest = [7u8; 32];
    let challenges = Arc::new(Challenges::default());
    challenges.answer_tls_alpn(GITLAB, &digest).unwrap();
    let ca = TestCa::new("jwks-edge test CA");
    let served = ca.issue(&[GITLAB]);
    let key = jwks_edge::tls::certified_key_from_pem(&served.chain_pem, &served.key_pem).unwrap();
    let resolver = Arc::new(CertResolver::with_challenges(CertSet::single(key), challenges));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = jwks_edge::edge::server::Endpoint {
        name: jwks_edge::model::listener::Listener::Https,
        listener,
        tls: Some(tokio_rustls::TlsAcceptor::from(
            jwks_edge::tls::server_config(resolver, true).unwrap(),
        )),
        limits: jwks_edge::config::limits::Limits::default(),
        metrics: jwks_edge::telemetry::metrics::Metrics::new(Vec::new())
            .listener(jwks_edge::model::listener::Listener::Https),
    };
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(jwks_edge::edge::server::serve(
        endpoint,
        Arc::new(Counting(requests.clone())),
        async {
            let _ = stopped.await;
        },
    ));

    // RFC 8737: acme-tls/1 alone gets the self-signed certificate for the name, its
    // critical acmeIdentifier extension holding the digest, and the connection ends
    // with the handshake.
    let Transport::Tls { config, sni } = any_certificate(b"acme-tls/1") else {
        unreachable!()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(sni).unwrap();
    let mut tls = tokio::time::timeout(IO_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(names(&leaf), [GITLAB]);
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let acme_identifier = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("an acmeIdentifier extension");
    assert!(acme_identifier.critical);
    assert_eq!(acme_identifier.value, [&[0x04, 0x20][..], &digest].concat());
    let _ = tls
        .write_all(b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: gitlab.example.com\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, tls.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed, nothing answered: {read:?} {rest:?}"
    );

    // Offered beside other protocols, acme-tls/1 is not a validation: the usual certificate.
    let leaf = try_handshake(addr, &{
        let Transport::Tls { config, sni } = trusting(&ca.pem(), GITLAB) else {
            unreachable!()
        };
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"acme-tls/1".to_vec()];
        Transport::Tls {
            config: Arc::new(config),
            sni,
        }
    })
    .await
    .unwrap();
    assert_eq!(leaf, served.leaf());
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    let _ = stop.send(());
    tokio::time::timeout(IO_TIMEOUT, server).await.unwrap().unwrap();
}
