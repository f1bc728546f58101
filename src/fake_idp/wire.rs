//! One connection to the fake IdP: read the request head, apply the fault, answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::fake_idp::state::{lock, Fault, InFlight, State};

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

pub(super) async fn connection(mut stream: TcpStream, tls: Option<TlsAcceptor>, state: Arc<State>) {
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
    let _in_flight = InFlight::enter(state);
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
