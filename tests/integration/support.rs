//! Builders for the integration tests: certificates, fake IdPs, a running proxy, a client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jwks_edge::app::{App, Listeners};
use jwks_edge::config::Config;
use jwks_edge::fake_idp::{FakeIdp, Resource};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every network wait in the tests is bounded by this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).expect("fixture exists")
}

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

/// Starts a fake IdP on an ephemeral loopback port.
pub async fn fake_idp() -> FakeIdp {
    FakeIdp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

/// A fake IdP serving each `(path, body)` with the headers self-hosted IdPs send.
async fn idp_serving(documents: &[(&str, String)]) -> FakeIdp {
    let idp = fake_idp().await;
    for (path, body) in documents {
        idp.put(path, Resource::json_with_idp_headers(body.clone()));
    }
    idp
}

/// A fake IdP shaped like GitLab whose `external_url` is public: `jwks_uri` is already
/// the public URL, and the IdP sends no-cache headers and a session cookie.
pub async fn gitlab_idp() -> FakeIdp {
    idp_serving(&[
        (
            "/.well-known/openid-configuration",
            fixture("gitlab/openid-configuration.json"),
        ),
        ("/oauth/discovery/keys", fixture("gitlab/jwks.json")),
    ])
    .await
}

/// A fake IdP shaped like a Keycloak realm: `issuer` on the public frontend URL, every
/// endpoint (the key set included) on the IdP's own backend address.
pub async fn keycloak_idp(realm: &str) -> FakeIdp {
    let idp = fake_idp().await;
    let backend = format!("{}/realms/{realm}", idp.base_url());
    let discovery = fixture("keycloak/openid-configuration.json")
        .replace("http://keycloak.internal:8080/realms/prod", &backend)
        .replace(
            "https://auth.example.com/realms/prod",
            &format!("https://auth.example.com/realms/{realm}"),
        );
    idp.put(
        &format!("/realms/{realm}/.well-known/openid-configuration"),
        Resource::json_with_idp_headers(discovery),
    );
    idp.put(
        &format!("/realms/{realm}/protocol/openid-connect/certs"),
        Resource::json_with_idp_headers(fixture("keycloak/jwks.json")),
    );
    idp
}

/// A fake IdP shaped like a Kubernetes API server: `jwks_uri` on the in-cluster address.
pub async fn kubernetes_idp() -> FakeIdp {
    idp_serving(&[
        (
            "/.well-known/openid-configuration",
            fixture("kubernetes/openid-configuration.json"),
        ),
        ("/openid/v1/jwks", fixture("kubernetes/jwks.json")),
    ])
    .await
}

/// A proxy running in this process on ephemeral loopback ports. Stops when dropped.
pub struct RunningProxy {
    pub https: Option<SocketAddr>,
    pub plain: Option<SocketAddr>,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _certs: Option<Arc<TestCerts>>,
}

impl RunningProxy {
    /// Starts the proxy on `issuers` (TOML `[[issuer]]` tables) with extra `[server]`
    /// and `[cache]` lines; HTTPS when `certs` is given, plain HTTP always.
    pub async fn start(issuers: &str, server: &str, cache: &str, certs: Option<Arc<TestCerts>>) -> RunningProxy {
        RunningProxy::start_with_admin(issuers, server, cache, "", certs).await
    }

    /// As `start`, with extra `[admin]` lines.
    pub async fn start_with_admin(
        issuers: &str,
        server: &str,
        cache: &str,
        admin: &str,
        certs: Option<Arc<TestCerts>>,
    ) -> RunningProxy {
        let tls = certs
            .as_ref()
            .map(|c| {
                format!(
                    "listen = \"127.0.0.1:0\"\n[server.tls]\ncert = {:?}\nkey = {:?}\n",
                    c.cert, c.key
                )
            })
            .unwrap_or_default();
        let text = format!(
            "[server]\nlisten_plain = \"127.0.0.1:0\"\n{server}\n{tls}\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n[cache]\n{cache}\n{issuers}"
        );
        let config = Config::from_toml(&text, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let listeners = Listeners::bind(&config).await.unwrap();
        let mut proxy = RunningProxy::run(config, listeners).await;
        proxy._certs = certs;
        proxy
    }

    /// Runs `config` on listeners the caller bound.
    pub async fn run(config: Config, listeners: Listeners) -> RunningProxy {
        let https = listeners.https.as_ref().map(|l| l.local_addr().unwrap());
        let plain = listeners.plain.as_ref().map(|l| l.local_addr().unwrap());
        let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
        let app = App::new(config).unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            app.run(listeners, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        RunningProxy {
            https,
            plain,
            admin,
            stop: Some(stop),
            task,
            _certs: None,
        }
    }

    /// Stops accepting, drains, and waits for the proxy to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(IO_TIMEOUT, &mut self.task)
            .await
            .expect("proxy stops within the drain timeout")
            .unwrap();
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An `[[issuer]]` table.
pub fn issuer(public_url: &str, upstream: &str, extra: &str) -> String {
    format!("[[issuer]]\npublic_url = \"{public_url}\"\nupstream = \"{upstream}\"\n{extra}\n")
}

/// How a test client talks to the proxy.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// HTTP/1.1 over TLS, or HTTP/2 when the config offers only `h2`.
    Tls {
        config: Arc<rustls::ClientConfig>,
        sni: String,
    },
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One client connection; requests on it reuse it (keep-alive or HTTP/2 streams).
pub struct Conn {
    sender: Sender,
    pub alpn: Option<Vec<u8>>,
    /// The server's leaf certificate, over TLS.
    pub peer_cert: Option<CertificateDer<'static>>,
    /// Whether the TLS session was resumed.
    pub resumed: bool,
}

impl Conn {
    pub async fn open(addr: SocketAddr, transport: &Transport) -> Conn {
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        match transport {
            Transport::Plain => Conn::handshake(TokioIo::new(tcp), false, None, None, false).await,
            Transport::Tls { config, sni } => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = ServerName::try_from(sni.clone()).unwrap();
                let tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .unwrap()
                    .unwrap();
                let session = tls.get_ref().1;
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                let peer_cert = session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned());
                let h2 = alpn.as_deref() == Some(b"h2");
                let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                Conn::handshake(TokioIo::new(tls), h2, alpn, peer_cert, resumed).await
            }
        }
    }

    async fn handshake<T>(
        io: TokioIo<T>,
        h2: bool,
        alpn: Option<Vec<u8>>,
        peer_cert: Option<CertificateDer<'static>>,
        resumed: bool,
    ) -> Conn
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Conn {
            sender,
            alpn,
            peer_cert,
            resumed,
        }
    }

    /// Sends `method` for `host` + `path` with extra headers, and reads the whole reply.
    pub async fn send(&mut self, method: Method, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder().method(method);
        builder = match &self.sender {
            Sender::H1(_) => builder.uri(path).header("host", host),
            Sender::H2(_) => builder.uri(format!("https://{host}{path}")),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Empty::new()).unwrap();
        let exchange = async {
            let response = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.unwrap();
                    s.send_request(request).await.unwrap()
                }
                Sender::H2(s) => {
                    s.ready().await.unwrap();
                    s.send_request(request).await.unwrap()
                }
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .expect("reply within the IO timeout")
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        self.send(Method::GET, host, path, &[]).await
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, transport: &Transport, host: &str, path: &str) -> Reply {
    Conn::open(addr, transport).await.get(host, path).await
}

/// Polls `check` every 20 ms until it holds, failing after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/readyz` on the admin listener: status and body.
pub async fn readyz(admin: SocketAddr) -> (StatusCode, serde_json::Value) {
    let reply = get(admin, &Transport::Plain, "localhost", "/readyz").await;
    (reply.status, reply.json())
}

/// Waits (bounded) until the proxy at `addr` serves `host` + `path` with a 200.
pub async fn until_served(addr: SocketAddr, host: &str, path: &str) {
    eventually(Duration::from_secs(10), "the document to be served", || async {
        get(addr, &Transport::Plain, host, path).await.status == StatusCode::OK
    })
    .await;
}
