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
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
                    HeaderValue::from_static(
                        "_gitlab_session=4f1c2a; path=/; HttpOnly; SameSite=Lax",
                    ),
                ),
            ],
        }
    }
}

/// What the IdP does instead of answering normally; applies to every path.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// Answer with this status and a short text body.
    Status(u16),
    /// Answer 200 with an HTML login page (a proxy or SSO portal in the way).
    Html,
    /// Accept the request and never answer.
    Hang,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Answer 200 with this body instead of the document.
    Body(Bytes),
}

struct State {
    resources: Mutex<HashMap<String, Resource>>,
    fault: Mutex<Fault>,
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// Headers of the most recent request, to check what the proxy forwards.
    last_headers: Mutex<HeaderMap>,
}

/// A running fake IdP (plain HTTP/1.1). Stops when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeIdp {
    /// Serves on `listener` until dropped.
    pub fn serve(listener: TcpListener) -> std::io::Result<FakeIdp> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            resources: Mutex::new(HashMap::new()),
            fault: Mutex::new(Fault::None),
            hits: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            last_headers: Mutex::new(HeaderMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
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

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.state.fault) = fault;
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

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        // Connections live in the set, so aborting this task closes them all.
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    *lock(&state.hits).entry(path.clone()).or_default() += 1;
    state.total.fetch_add(1, Ordering::Relaxed);
    *lock(&state.last_headers) = request.headers().clone();
    let fault = lock(&state.fault).clone();
    let resource = lock(&state.resources).get(&path).cloned();
    let plain = |status: StatusCode, body: &'static str, content_type: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    match fault {
        Fault::None => {}
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
        Fault::Body(body) => return Response::new(Full::new(body)),
    }
    match resource {
        Some(resource) => {
            let mut response = Response::new(Full::new(resource.body));
            for (name, value) in resource.headers {
                response.headers_mut().append(name, value);
            }
            response
        }
        None => plain(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}
