//! `FakeIdp`: a small identity provider with switchable faults, for the demo, tests and benches.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// One document the IdP serves, with the headers it sends along.
#[derive(Clone, Debug)]
pub struct Resource {
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Resource {
    /// A JSON body with the headers self-hosted IdPs are known to send and relying parties
    /// suffer from: `no-cache`, `Pragma`, a past `Expires` and a session cookie.
    pub fn json_with_idp_headers(body: impl Into<Bytes>) -> Resource {
        Resource {
            body: body.into(),
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, no-store, must-revalidate, private"),
                ),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
                (
                    header::EXPIRES,
                    HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
                ),
                (
                    header::SET_COOKIE,
                    HeaderValue::from_static("_gitlab_session=4f1c2a; path=/; HttpOnly; SameSite=Lax"),
                ),
            ],
        }
    }
}

/// What the IdP does instead of answering normally; applies to every new connection
/// (the IdP closes each connection after one answer, so a fault takes effect at once).
#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// Close the listening socket: connections are refused.
    Refuse,
    /// Read the request, then reset the connection (RST) without answering.
    Reset,
    /// Accept the request and never answer.
    Hang,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Send the head at once, then the body one byte per interval.
    Drip(Duration),
    /// Answer with this status and a short text body.
    Status(u16),
    /// Answer 200 with an HTML login page (a proxy or SSO portal in the way).
    Html,
    /// Announce the document's full length, send half of it, close.
    Truncate,
    /// Answer 200 with this body instead of the document.
    Body(Bytes),
    /// Answer 200 with this many bytes, chunked (no Content-Length to refuse early).
    Oversize(usize),
    /// Answer 302 with this `Location`.
    Redirect(String),
}

struct State {
    resources: Mutex<HashMap<String, Resource>>,
    fault: watch::Sender<Fault>,
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// Headers of the most recent request, to check what the proxy forwards.
    last_headers: Mutex<HeaderMap>,
    /// When set, requests without `Authorization: Bearer <token>` get a 401.
    bearer: Mutex<Option<String>>,
}

impl State {
    fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }

    fn count(&self, path: &str) {
        *lock(&self.hits).entry(path.to_owned()).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running fake IdP (HTTP/1.1, plain or TLS). Stops when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeIdp {
    /// Serves plain HTTP on `listener` until dropped.
    pub fn serve(listener: TcpListener) -> std::io::Result<FakeIdp> {
        FakeIdp::start(listener, None)
    }

    /// Serves HTTPS on `listener` until dropped; `config` decides the certificate and
    /// whether clients must present one. Connection-level faults (`Reset`, `Truncate`)
    /// apply to plain HTTP only.
    pub fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<FakeIdp> {
        FakeIdp::start(listener, Some(TlsAcceptor::from(config)))
    }

    fn start(listener: TcpListener, tls: Option<TlsAcceptor>) -> std::io::Result<FakeIdp> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            resources: Mutex::new(HashMap::new()),
            fault: watch::Sender::new(Fault::None),
            hits: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            last_headers: Mutex::new(HeaderMap::new()),
            bearer: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(addr, listener, tls, state.clone()));
        Ok(FakeIdp { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `resource` at `path` (replacing what was there: key rotation).
    pub fn put(&self, path: &str, resource: Resource) {
        lock(&self.state.resources).insert(path.to_owned(), resource);
    }

    /// Requires `Authorization: Bearer <token>` from now on (`None`: no longer).
    pub fn require_bearer(&self, token: Option<&str>) {
        *lock(&self.state.bearer) = token.map(str::to_owned);
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.fault.send_replace(fault);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> u64 {
        lock(&self.state.hits).get(path).copied().unwrap_or(0)
    }

    /// Requests seen on any path.
    pub fn total_hits(&self) -> u64 {
        self.state.total.load(Ordering::Relaxed)
    }

    pub fn last_request_headers(&self) -> HeaderMap {
        lock(&self.state.last_headers).clone()
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `addr` again after `Fault::Refuse` ends (bounded retries).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return Some(listener);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn accept_loop(addr: SocketAddr, listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    let mut faults = state.fault.subscribe();
    let mut listener = Some(listener);
    // Connections live in the set, so aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let refusing = matches!(*faults.borrow_and_update(), Fault::Refuse);
        if refusing {
            listener = None;
        } else if listener.is_none() {
            listener = rebind(addr).await;
        }
        let Some(current) = &listener else {
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        };
        let stream = tokio::select! {
            accepted = current.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        connections.spawn(connection(stream, tls.clone(), state.clone()));
    }
}

/// Reads a request head (bounded) and returns its path.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let path = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    Some(path.split('?').next().unwrap_or(path).to_owned())
}

async fn connection(mut stream: TcpStream, tls: Option<TlsAcceptor>, state: Arc<State>) {
    if let Some(acceptor) = tls {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await {
            serve_http(stream, state).await;
        }
        return;
    }
    match state.fault() {
        Fault::Reset => {
            if let Some(path) = read_head(&mut stream).await {
                state.count(&path);
            }
            // Linger zero turns the close into a reset.
            let _ = stream.set_zero_linger();
        }
        Fault::Truncate => {
            let Some(path) = read_head(&mut stream).await else {
                return;
            };
            state.count(&path);
            let body = lock(&state.resources)
                .get(&path)
                .map(|r| r.body.clone())
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body[..body.len() / 2]).await;
            let _ = stream.shutdown().await;
        }
        _ => serve_http(stream, state).await,
    }
}

async fn serve_http<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(answer(&state, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A body sent in `chunk`-byte frames, each after `interval` (none: as fast as possible).
struct Trickle {
    data: Bytes,
    chunk: usize,
    interval: Option<Duration>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(data: Bytes, chunk: usize, interval: Option<Duration>) -> Trickle {
        let first = tokio::time::Instant::now() + interval.unwrap_or_default();
        Trickle {
            data,
            chunk,
            interval,
            sleep: Box::pin(tokio::time::sleep_until(first)),
        }
    }
}

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return std::task::Poll::Ready(None);
        }
        if let Some(interval) = self.interval {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let next = self.sleep.deadline() + interval;
            self.sleep.as_mut().reset(next);
        }
        let n = self.chunk.min(self.data.len());
        let frame = self.data.split_to(n);
        std::task::Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    state.count(&path);
    *lock(&state.last_headers) = request.headers().clone();
    let resource = lock(&state.resources).get(&path).cloned();
    let plain = |status: StatusCode, body: &'static str, content_type: &'static str| {
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let bearer = lock(&state.bearer).clone();
    if let Some(token) = bearer {
        let expected = format!("Bearer {token}");
        if request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(expected.as_str())
        {
            return plain(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token\n",
                "text/plain",
            );
        }
    }
    let mut drip = None;
    match state.fault() {
        Fault::None | Fault::Refuse | Fault::Reset | Fault::Truncate => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(status, "fault injected\n", "text/plain");
        }
        Fault::Html => {
            return plain(
                StatusCode::OK,
                "<!DOCTYPE html><html><body>Sign in</body></html>\n",
                "text/html; charset=utf-8",
            )
        }
        Fault::Hang => std::future::pending::<()>().await,
        Fault::Delay(delay) => tokio::time::sleep(delay).await,
        Fault::Drip(interval) => drip = Some(interval),
        Fault::Body(body) => return Response::new(full(body)),
        Fault::Redirect(location) => {
            let mut response = plain(StatusCode::FOUND, "moved\n", "text/plain");
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return response;
        }
        Fault::Oversize(len) => {
            let mut data = b"{\"keys\":[".to_vec();
            data.resize(len, b' ');
            return Response::new(Trickle::new(Bytes::from(data), 64 * 1024, None).boxed_unsync());
        }
    }
    match resource {
        Some(resource) => {
            let body = match drip {
                Some(interval) => Trickle::new(resource.body, 1, Some(interval)).boxed_unsync(),
                None => full(resource.body),
            };
            let mut response = Response::new(body);
            for (name, value) in resource.headers {
                response.headers_mut().append(name, value);
            }
            response
        }
        None => plain(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}
