//! `Reject`: every error answer of both listeners, public and admin — its status, headers
//! and JSON body — made by one exhaustive `match`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::edge::connection::Body;

/// Why a request gets no document (public listener) or no report (admin listener).
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
    /// Nothing at this host and path (or admin actions are off).
    NotFound,
    /// Something is served here, but only with the methods `Allow` names.
    MethodNotAllowed(Allow),
    /// No copy yet, and none arrived within the deadline.
    NotReady,
    /// The last good copy is older than `cache.stale_if_error`.
    Expired,
    /// An admin action without the admin token.
    Unauthorized,
    /// `admin.token_file` cannot be read, so no admin action can be authorised.
    TokenUnavailable,
    /// `?issuer=NAME` names no configured issuer.
    UnknownIssuer,
}

/// The methods a path is served with, as a 405's `Allow` header and message name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// A document: GET, HEAD, and OPTIONS for CORS preflights.
    GetHeadOptions,
    /// The admin listener's reads: `/healthz`, `/readyz`, `/metrics`.
    GetHead,
    /// The admin actions: `/admin/refresh`, `/admin/drop-retained`.
    Post,
}

impl Allow {
    pub const fn header(self) -> HeaderValue {
        match self {
            Allow::GetHeadOptions => HeaderValue::from_static("GET, HEAD, OPTIONS"),
            Allow::GetHead => HeaderValue::from_static("GET, HEAD"),
            Allow::Post => HeaderValue::from_static("POST"),
        }
    }

    fn message(self) -> &'static str {
        match self {
            Allow::GetHeadOptions => "only GET, HEAD and OPTIONS are served",
            Allow::GetHead => "only GET and HEAD are served",
            Allow::Post => "only POST is served",
        }
    }
}

/// Seconds a client is told to wait (`Retry-After`) when an answer may come soon.
pub const RETRY_AFTER: HeaderValue = HeaderValue::from_static("5");

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::MissingHost | Reject::AmbiguousHost | Reject::AmbiguousFraming | Reject::BodyNotAllowed => {
                StatusCode::BAD_REQUEST
            }
            Reject::NotFound | Reject::UnknownIssuer => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Reject::NotReady | Reject::Expired => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Unauthorized => StatusCode::UNAUTHORIZED,
            Reject::TokenUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
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
            Reject::MethodNotAllowed(allow) => ("method_not_allowed", allow.message()),
            Reject::NotReady => ("not_ready", "the identity provider has not answered yet; retry shortly"),
            Reject::Expired => (
                "expired",
                "the identity provider has been failing for longer than the proxy may serve its last good copy",
            ),
            Reject::Unauthorized => ("unauthorized", "a valid Authorization: Bearer token is required"),
            Reject::TokenUnavailable => ("token_unavailable", "the admin token cannot be read"),
            Reject::UnknownIssuer => ("unknown_issuer", "no issuer has this name"),
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
            Reject::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, allow.header());
            }
            Reject::NotReady | Reject::Expired => {
                headers.insert(header::RETRY_AFTER, RETRY_AFTER);
            }
            Reject::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Reject::MissingHost
            | Reject::AmbiguousHost
            | Reject::AmbiguousFraming
            | Reject::BodyNotAllowed
            | Reject::NotFound
            | Reject::TokenUnavailable
            | Reject::UnknownIssuer => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(reject: Reject) -> serde_json::Value {
        let bytes = reject.response().into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_405_names_the_methods_its_path_is_served_with() {
        for (allow, header, message) in [
            (
                Allow::GetHeadOptions,
                "GET, HEAD, OPTIONS",
                "only GET, HEAD and OPTIONS are served",
            ),
            (Allow::GetHead, "GET, HEAD", "only GET and HEAD are served"),
            (Allow::Post, "POST", "only POST is served"),
        ] {
            let reject = Reject::MethodNotAllowed(allow);
            let response = reject.response();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(response.headers()[header::ALLOW], header);
            assert_eq!(
                body(reject).await,
                serde_json::json!({"error": "method_not_allowed", "message": message})
            );
        }
    }

    #[tokio::test]
    async fn an_unauthorized_action_is_told_the_scheme() {
        let response = Reject::Unauthorized.response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(body(Reject::Unauthorized).await["error"], "unauthorized");
    }
}
