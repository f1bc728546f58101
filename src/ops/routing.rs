//! Which admin endpoint answers a request — by path, token, method, `?issuer=` and
//! `?detail=` — and how its result is sent: JSON with its status, HTML (the status page
//! at `/`), or a `Reject`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::edge::connection::{Body, ConnInfo, Handler};
use crate::edge::reject::{Allow, Reject, RETRY_AFTER};
use crate::ops::actions::Report;
use crate::ops::admin::Admin;
use crate::ops::readiness::Detail;

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        let path = request.uri().path();
        if path == "/admin/refresh" || path == "/admin/drop-retained" {
            let Some(authorized) = self.authorized(&request).await else {
                return Reject::NotFound.response();
            };
            if let Err(reject) = authorized {
                return reject.response();
            }
            if request.method() != Method::POST {
                return Reject::MethodNotAllowed(Allow::Post).response();
            }
            let issuer = query_param(request.uri(), "issuer");
            let report = if path == "/admin/drop-retained" {
                self.drop_retained(issuer.as_deref()).await
            } else {
                self.refresh(issuer.as_deref()).await
            };
            return match report {
                Ok(report) => report_response(report),
                Err(reject) => reject.response(),
            };
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Reject::MethodNotAllowed(Allow::GetHead).response();
        }
        match path {
            // Open like /readyz: it shows the same state, and acts on nothing.
            // The page's form sends an empty name when submitted blank: the summary then.
            "/" => match query_param(request.uri(), "issuer").filter(|name| !name.is_empty()) {
                Some(name) => self.issuer_page(&name),
                None => {
                    let page = query_param(request.uri(), "page")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    self.status_page(page)
                }
            },
            "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => {
                let detail = query_param(request.uri(), "detail");
                let Some(detail) = Detail::parse(detail.as_deref()) else {
                    let error = json!({"error": "detail is `summary` (the default) or `full`", "detail": detail});
                    return json_response(StatusCode::BAD_REQUEST, &error);
                };
                let (ready, body) = match query_param(request.uri(), "issuer") {
                    None => self.readiness(detail),
                    Some(name) => match self.issuer_index(&name) {
                        Some(index) => self.issuer_readiness(index),
                        None => return Reject::UnknownIssuer.response(),
                    },
                };
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, &body)
            }
            "/metrics" => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics_text())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => Reject::NotFound.response(),
        }
    }
}

impl Admin {
    /// Whether the request carries the admin token; `None` when admin actions are off.
    async fn authorized<B>(&self, request: &Request<B>) -> Option<Result<(), Reject>> {
        let path = self.token_file.as_ref()?;
        let expected = match tokio::fs::read_to_string(path).await {
            Ok(token) => token.trim().to_owned(),
            Err(err) => {
                tracing::error!(path = %path.display(), "cannot read admin.token_file: {err}");
                return Some(Err(Reject::TokenUnavailable));
            }
        };
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !expected.is_empty() && same_secret(given.trim().as_bytes(), expected.as_bytes()) {
            return Some(Ok(()));
        }
        Some(Err(Reject::Unauthorized))
    }
}

/// Equal without revealing, through timing, how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A report or probe answer: the value as one line of JSON.
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("a JSON value always serialises");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An action's report; a busy refresher makes it worth retrying shortly.
fn report_response(report: Report) -> Response<Body> {
    let mut response = json_response(report.status, &report.body);
    if report.busy {
        response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER);
    }
    response
}

/// The value of `name` in the URI's query, percent-decoded; `None` when absent or not
/// valid UTF-8 once decoded.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    let raw = uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}
