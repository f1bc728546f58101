//! The doctor's network: curl-like `--resolve`, address classes, TLS inspection, one GET.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

/// Largest document the doctor reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// `HOST:PORT:ADDR`, as curl's `--resolve`.
#[derive(Clone, Debug)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for ResolveOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, rest) = s.split_once(':').ok_or("expected HOST:PORT:ADDR")?;
        let (port, addr) = rest.split_once(':').ok_or("expected HOST:PORT:ADDR")?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port: port.parse().map_err(|_| format!("{port:?} is not a port"))?,
            addr: addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?,
        })
    }
}

/// Loopback, private, link-local, shared (CGNAT), unspecified or unique-local: a relying
/// party on the internet cannot reach it.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// What a TLS handshake showed.
#[derive(Clone, Debug)]
pub struct TlsFacts {
    /// The chain as served, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether it validates against the trusted roots for the host name.
    pub verified: Result<(), String>,
    pub version: Option<rustls::ProtocolVersion>,
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
            .map_err(|e| e.to_string());
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

/// Everything a GET needs: name resolution, trust, time limit.
#[derive(Clone)]
pub struct Net {
    pub overrides: Vec<ResolveOverride>,
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

impl Net {
    /// The addresses of `host:port`: an override, or DNS.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if let Some(o) = self.overrides.iter().find(|o| o.host == host && o.port == port) {
            return Ok(vec![SocketAddr::new(o.addr, port)]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let target = format!("{host}:{port}");
        let lookup = tokio::time::timeout(self.timeout, tokio::net::lookup_host(target)).await;
        match lookup {
            Ok(Ok(addrs)) => {
                let addrs: Vec<_> = addrs.collect();
                if addrs.is_empty() {
                    Err(format!("{host} has no address"))
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(err)) => Err(format!("cannot resolve {host}: {err}")),
            Err(_) => Err(format!("resolving {host} took longer than {:?}", self.timeout)),
        }
    }

    fn tls_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ClientConfig>, Arc<RecordingVerifier>) {
        let inner = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), crate::tls::provider())
            .build()
            .expect("a root store with the provider's algorithms builds");
        let verifier = Arc::new(RecordingVerifier {
            inner,
            seen: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(config), verifier)
    }

    /// Whether a handshake limited to `version` succeeds (to list what the server offers).
    pub async fn handshake_with(
        &self,
        host: &str,
        addr: SocketAddr,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> bool {
        let (config, _) = self.tls_config(&[version]);
        let Ok(name) = ServerName::try_from(host.to_owned()) else {
            return false;
        };
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.ok()?;
            tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()
        };
        matches!(tokio::time::timeout(self.timeout, attempt).await, Ok(Some(_)))
    }

    /// GETs `url` (http or https) from `addr`, reading at most 4 MiB, within the timeout.
    pub async fn get(&self, url: &Uri, addr: SocketAddr) -> Result<Fetched, String> {
        let started = tokio::time::Instant::now();
        let attempt = async {
            let host = url.host().ok_or("the URL has no host")?.to_owned();
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let request = Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
                .header(
                    http::header::HOST,
                    url.authority().map_or(host.as_str(), |a| a.as_str()),
                )
                .header(
                    http::header::USER_AGENT,
                    concat!("jwks-edge-doctor/", env!("CARGO_PKG_VERSION")),
                )
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let (response, tls) = if url.scheme_str() == Some("https") {
                let (config, verifier) = self.tls_config(&[&rustls::version::TLS13, &rustls::version::TLS12]);
                let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
                    .map_err(|e| e.to_string())?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                let version = stream.get_ref().1.protocol_version();
                let mut facts = verifier
                    .seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or(TlsFacts {
                        chain: Vec::new(),
                        verified: Err("no certificate".into()),
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
                .map_err(|e| format!("reading the body failed: {e}"))?
                .to_bytes();
            Ok::<_, String>(Fetched {
                status: parts.status,
                headers: parts.headers,
                body,
                elapsed: started.elapsed(),
                tls,
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {:?}", self.timeout)),
        }
    }
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "52.94.236.248", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn resolve_overrides_parse() {
        let o: ResolveOverride = "Auth.Example.com:443:127.0.0.1".parse().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("auth.example.com", 443));
        let o: ResolveOverride = "a:8443:[::1]".parse().unwrap();
        assert_eq!(o.addr, "::1".parse::<IpAddr>().unwrap());
        assert!("a:b:c".parse::<ResolveOverride>().is_err());
        assert!("a:443".parse::<ResolveOverride>().is_err());
    }
}
