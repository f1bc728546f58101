//! A test client: connections over plain HTTP, TLS or HTTP/2, and replies read whole.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::IO_TIMEOUT;

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

/// `/readyz` on the admin listener: status and body.
pub async fn readyz(admin: SocketAddr) -> (StatusCode, serde_json::Value) {
    let reply = get(admin, &Transport::Plain, "localhost", "/readyz").await;
    (reply.status, reply.json())
}

/// `/readyz?detail=full`: the same status, with every issuer's documents and keys (the
/// default summary lists only the issuers needing attention).
pub async fn readyz_detail(admin: SocketAddr) -> (StatusCode, serde_json::Value) {
    let reply = get(admin, &Transport::Plain, "localhost", "/readyz?detail=full").await;
    (reply.status, reply.json())
}
