//! Synthetic responses: every answer that is not a document is built here, in one place.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// Why a request gets no document. One exhaustive `match` maps each to its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No Host and no authority in the request target.
    MissingHost,
    /// More than one Host header.
    AmbiguousHost,
    /// Both Content-Length and Transfer-Encoding (a request smuggling attempt).
    AmbiguousFraming,
    /// A request body; no document accepts one.
    BodyNotAllowed,
    /// No document at this host and path.
    NotFound,
    /// A document exists here, but only GET, HEAD and OPTIONS are served.
    MethodNotAllowed,
    /// No copy yet, and none arrived within the deadline.
    NotReady,
    /// The last good copy is older than `cache.stale_if_error`.
    Expired,
}

/// Methods every document answers.
pub const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::MissingHost | Reject::AmbiguousHost | Reject::AmbiguousFraming | Reject::BodyNotAllowed => {
                StatusCode::BAD_REQUEST
            }
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::NotReady | Reject::Expired => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code_and_message(self) -> (&'static str, &'static str) {
        match self {
            Reject::MissingHost => ("missing_host", "the request names no host"),
            Reject::AmbiguousHost => ("ambiguous_host", "the request has more than one Host header"),
            Reject::AmbiguousFraming => (
                "ambiguous_framing",
                "the request has both Content-Length and Transfer-Encoding",
            ),
            Reject::BodyNotAllowed => ("body_not_allowed", "requests to this server carry no body"),
            Reject::NotFound => ("not_found", "no document at this address"),
            Reject::MethodNotAllowed => ("method_not_allowed", "only GET, HEAD and OPTIONS are served"),
            Reject::NotReady => ("not_ready", "the identity provider has not answered yet; retry shortly"),
            Reject::Expired => (
                "expired",
                "the identity provider has been failing for longer than the proxy may serve its last good copy",
            ),
        }
    }

    /// Whether an HTTP/1 connection must close after this answer: its request framing
    /// cannot be trusted, or its unread body would be taken for the next request.
    pub fn closes_connection(self) -> bool {
        matches!(self, Reject::AmbiguousFraming | Reject::BodyNotAllowed)
    }

    /// A small JSON body that names the problem and never the upstream.
    pub fn response(self) -> Response<Body> {
        let (code, message) = self.code_and_message();
        let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}\n");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        match self {
            Reject::MethodNotAllowed => {
                headers.insert(header::ALLOW, ALLOW);
            }
            Reject::NotReady | Reject::Expired => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Reject::MissingHost
            | Reject::AmbiguousHost
            | Reject::AmbiguousFraming
            | Reject::BodyNotAllowed
            | Reject::NotFound => {}
        }
        response
    }
}

/// The answer to a CORS preflight (`OPTIONS`) on a document.
pub fn preflight() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, ALLOW);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("if-none-match, cache-control"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}
