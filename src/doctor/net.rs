//! The doctor's connections: one GET or one TLS probe, always through the `Resolver`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use super::resolver::{Resolver, RouteError};

/// Largest document the doctor reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What a TLS handshake showed.
#[derive(Clone, Debug)]
pub struct TlsFacts {
    /// The chain as served, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether it validates against the trusted roots for the host name.
    pub verified: Result<(), Untrusted>,
    pub version: Option<rustls::ProtocolVersion>,
}

/// Why the served chain is not trusted for the host name.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Untrusted {
    /// The verifier's verdict, in rustls's words.
    #[error(transparent)]
    Rejected(rustls::Error),
    /// The handshake ended without the verifier being shown a certificate.
    #[error("no certificate")]
    NoCertificate,
}

/// Accepts any certificate but records the chain and the real verifier's verdict, so the
/// doctor can report on an untrusted or expired chain. Signatures are still checked.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The chain and verdict of the handshake (its version is filled in afterwards).
    seen: Mutex<Option<TlsFacts>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ())
            .map_err(Untrusted::Rejected);
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(TlsFacts {
            chain,
            verified: verdict,
            version: None,
        });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Everything a connection needs: where to (pinned and policed), trust, time limit.
#[derive(Clone)]
pub struct Net {
    pub resolver: Arc<Resolver>,
    pub roots: Arc<RootCertStore>,
    pub timeout: Duration,
}

/// One GET's result.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
    pub tls: Option<TlsFacts>,
}

/// Why a GET has no answer, by the phase that failed.
///
/// Each message is the whole line the report prints, its cause's text included; the
/// cause is kept as `source` too. The report prints the message alone, never the chain:
/// hyper's errors keep their own cause out of their text, and the report says only what
/// it always said.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("the URL has no host")]
    NoHost,
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The host is not a name rustls can verify a certificate for.
    #[error("TLS handshake failed: {0}")]
    ServerName(#[source] InvalidDnsNameError),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error("{0}")]
    Request(#[source] http::Error),
    #[error("{0}")]
    Handshake(#[source] hyper::Error),
    #[error("request failed: {0}")]
    Send(#[source] hyper::Error),
    #[error("reading the body failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
}

/// The port a URL names, or its scheme's default.
pub fn port_of(url: &Uri) -> u16 {
    url.port_u16()
        .unwrap_or(if url.scheme_str() == Some("http") { 80 } else { 443 })
}

/// The URL's host without IPv6 brackets.
pub fn host_of(url: &Uri) -> &str {
    url.host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
}

impl Net {
    fn tls_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ClientConfig>, Arc<RecordingVerifier>) {
        let inner = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), crate::tls::material::provider())
            .build()
            .expect("a root store with the provider's algorithms builds");
        let verifier = Arc::new(RecordingVerifier {
            inner,
            seen: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::material::provider())
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(config), verifier)
    }

    /// A TCP connection to the URL's host, at its pinned address, if the policy allows it.
    async fn connect(&self, url: &Uri) -> Result<TcpStream, FetchError> {
        let addr = self.resolver.route(host_of(url), port_of(url)).await?;
        TcpStream::connect(addr)
            .await
            .map_err(|source| FetchError::Connect { addr, source })
    }

    /// Whether a handshake limited to `version` succeeds (to list what the server offers).
    pub async fn handshake_with(&self, url: &Uri, version: &'static rustls::SupportedProtocolVersion) -> bool {
        let (config, _) = self.tls_config(&[version]);
        let Ok(name) = ServerName::try_from(host_of(url).to_owned()) else {
            return false;
        };
        let attempt = async {
            let tcp = self.connect(url).await.ok()?;
            tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()
        };
        matches!(tokio::time::timeout(self.timeout, attempt).await, Ok(Some(_)))
    }

    /// GETs `url` (http or https) from its host's pinned address, reading at most 4 MiB,
    /// within the timeout.
    pub async fn get(&self, url: &Uri) -> Result<Fetched, FetchError> {
        let started = tokio::time::Instant::now();
        let attempt = async {
            let host = url.host().ok_or(FetchError::NoHost)?;
            let tcp = self.connect(url).await?;
            let request = Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
                .header(http::header::HOST, url.authority().map_or(host, |a| a.as_str()))
                .header(
                    http::header::USER_AGENT,
                    concat!("jwks-edge-doctor/", env!("CARGO_PKG_VERSION")),
                )
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::<Bytes>::new())
                .map_err(FetchError::Request)?;
            let (response, tls) = if url.scheme_str() == Some("https") {
                let (config, verifier) = self.tls_config(&[&rustls::version::TLS13, &rustls::version::TLS12]);
                let name = ServerName::try_from(host_of(url).to_owned()).map_err(FetchError::ServerName)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(FetchError::Tls)?;
                let version = stream.get_ref().1.protocol_version();
                let mut facts = verifier
                    .seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or(TlsFacts {
                        chain: Vec::new(),
                        verified: Err(Untrusted::NoCertificate),
                        version: None,
                    });
                facts.version = version;
                (send(TokioIo::new(stream), request).await?, Some(facts))
            } else {
                (send(TokioIo::new(tcp), request).await?, None)
            };
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(FetchError::Body)?
                .to_bytes();
            Ok::<_, FetchError>(Fetched {
                status: parts.status,
                headers: parts.headers,
                body,
                elapsed: started.elapsed(),
                tls,
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, FetchError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(FetchError::Handshake)?;
    tokio::spawn(conn);
    sender.send_request(request).await.map_err(FetchError::Send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::address::AddressPolicy;
    use crate::fake_idp::{FakeIdp, Resource};

    /// Two fake IdPs on one port: 127.0.0.1 and 127.0.0.2 (bounded retries for the port).
    async fn twins() -> (FakeIdp, FakeIdp) {
        for _ in 0..20 {
            let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = first.local_addr().unwrap().port();
            if let Ok(second) = tokio::net::TcpListener::bind(("127.0.0.2", port)).await {
                return (FakeIdp::serve(first).unwrap(), FakeIdp::serve(second).unwrap());
            }
        }
        panic!("no port free on both 127.0.0.1 and 127.0.0.2");
    }

    fn net(answers: Vec<Vec<std::net::IpAddr>>, allow_private: bool) -> Net {
        let policy = AddressPolicy {
            allow_private,
            ..AddressPolicy::default()
        };
        Net {
            resolver: Arc::new(Resolver::scripted(answers, policy)),
            roots: Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn every_connection_to_a_host_goes_to_its_first_answer() {
        let (first, second) = twins().await;
        for idp in [&first, &second] {
            idp.put("/doc", Resource::json_with_idp_headers("{}"));
        }
        let port = first.addr().port();
        let url: Uri = format!("http://rebind.test:{port}/doc").parse().unwrap();
        // The name server answers 127.0.0.1, then 127.0.0.2 (DNS rebinding).
        let net = net(
            vec![vec!["127.0.0.1".parse().unwrap()], vec!["127.0.0.2".parse().unwrap()]],
            true,
        );
        for _ in 0..3 {
            assert_eq!(net.get(&url).await.unwrap().status, StatusCode::OK);
        }
        assert_eq!(first.hits("/doc"), 3);
        assert_eq!(second.total_hits(), 0, "a later connection followed a new DNS answer");
    }

    #[tokio::test]
    async fn a_failed_get_names_the_phase_that_failed() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        // Accepted by the kernel, never answered.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = FakeIdp::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let loopback = || vec!["127.0.0.1".parse().unwrap()];
        let net = Net {
            timeout: Duration::from_millis(500),
            ..net(vec![loopback(), loopback(), loopback()], true)
        };
        let get = |host: &str, port: u16| {
            let url: Uri = format!("https://{host}:{port}/doc").parse().unwrap();
            let net = net.clone();
            async move { net.get(&url).await.unwrap_err() }
        };

        let err = get("closed.test", closed_port).await;
        assert!(matches!(err, FetchError::Connect { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot connect to 127.0.0.1:"), "{err}");
        let err = get("silent.test", silent.local_addr().unwrap().port()).await;
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
        assert_eq!(err.to_string(), "no complete answer within 500ms");
        let err = get("plain.test", plain.addr().port()).await;
        assert!(matches!(err, FetchError::Tls(_)), "{err}");
        assert!(err.to_string().starts_with("TLS handshake failed: "), "{err}");
    }

    #[tokio::test]
    async fn a_refused_address_is_never_connected_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url: Uri = format!("https://internal.test:{}/doc", addr.port()).parse().unwrap();
        let net = net(vec![vec![addr.ip()]], false);
        let err = net.get(&url).await.unwrap_err();
        assert!(matches!(err, FetchError::Route(RouteError::Refused { .. })), "{err}");
        assert!(!net.handshake_with(&url, &rustls::version::TLS13).await);
        // Nothing reached the listener: the refusal came before connect.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the doctor connected to a refused address");
    }
}
