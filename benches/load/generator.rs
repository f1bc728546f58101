//! The load generator: closed-loop clients on hyper and rustls, keeping their connection
//! alive or opening one per request, and the latencies they see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::common::{HOST, PATH};

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    KeepAlive,
    NewConnection,
}

#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub mode: Mode,
}

#[derive(Default)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    elapsed: Duration,
    pub latencies: Vec<u32>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(self.latencies[index] as u64)
    }
}

pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// Bound on one connection setup or one exchange: a stalled server ends the request as an
/// error instead of hanging the benchmark.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect(target: &Target) -> Result<Sender, String> {
    tokio::time::timeout(IO_TIMEOUT, connect_unbounded(target))
        .await
        .map_err(|_| "connect timed out".to_owned())?
}

async fn connect_unbounded(target: &Target) -> Result<Sender, String> {
    let tcp = TcpStream::connect(target.addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
        Some(config) => {
            let name = ServerName::try_from(HOST).unwrap();
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Sender::H2(sender))
            } else {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(Sender::H1(sender))
            }
        }
    }
}

pub async fn request(sender: &mut Sender) -> Result<usize, String> {
    tokio::time::timeout(IO_TIMEOUT, request_unbounded(sender))
        .await
        .map_err(|_| "request timed out".to_owned())?
}

async fn request_unbounded(sender: &mut Sender) -> Result<usize, String> {
    let response = send(sender).await?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(body.len())
}

/// The response headers of one key set request: the ceiling sends the proxy's own, so the
/// two put the same bytes on the wire.
pub async fn response_headers(sender: &mut Sender) -> Result<http::HeaderMap, String> {
    let response = tokio::time::timeout(IO_TIMEOUT, send(sender))
        .await
        .map_err(|_| "request timed out".to_owned())??;
    let headers = response.headers().clone();
    let _ = response.into_body().collect().await;
    Ok(headers)
}

async fn send(sender: &mut Sender) -> Result<http::Response<hyper::body::Incoming>, String> {
    Ok(match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            let req = Request::get(PATH).header("host", HOST).body(Empty::new()).unwrap();
            s.send_request(req).await.map_err(|e| e.to_string())?
        }
        Sender::H2(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            let req = Request::get(format!("https://{HOST}{PATH}"))
                .body(Empty::new())
                .unwrap();
            s.send_request(req).await.map_err(|e| e.to_string())?
        }
    })
}

/// Runs `connections` closed-loop clients against `target` for `duration`.
pub async fn load(target: &Target, connections: usize, duration: Duration) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let mut sender = None;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if sender.is_none() || target.mode == Mode::NewConnection {
                    match connect(&target).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            stats.errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                match request(sender.as_mut().unwrap()).await {
                    Ok(_) => {
                        stats.requests += 1;
                        stats
                            .latencies
                            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => {
                        stats.errors += 1;
                        sender = None;
                    }
                }
            }
            stats
        });
    }
    let mut total = Stats::default();
    while let Some(done) = tasks.join_next().await {
        let stats = done.unwrap();
        total.requests += stats.requests;
        total.errors += stats.errors;
        total.latencies.extend(stats.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

pub fn client_config(ca: &rcgen::Certificate, alpn: &[u8], resumption: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(jwks_edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}
