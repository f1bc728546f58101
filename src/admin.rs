//! `Admin`: the operator's listener, `/healthz` (process alive) and `/readyz` (per-issuer state).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::document::{CachePolicy, DocKind, Freshness};
use crate::response::{Body, Reject};
use crate::server::Handler;
use crate::store::{DocId, DocumentStore};

pub struct Admin {
    names: Vec<String>,
    store: Arc<DocumentStore>,
    policy: CachePolicy,
}

impl Admin {
    pub fn new(names: Vec<String>, store: Arc<DocumentStore>, policy: CachePolicy) -> Admin {
        Admin {
            names,
            store,
            policy,
        }
    }

    /// Ready when every document of every issuer can be served (fresh or stale).
    fn readiness(&self) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let mut ready = true;
        let issuers: Vec<_> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut state = |kind: DocKind| {
                    let id = DocId { issuer: i, kind };
                    let label = match self.store.get(id) {
                        None => "missing",
                        Some(doc) => match self.policy.freshness(doc.fetched_at, now) {
                            Freshness::Fresh => "fresh",
                            Freshness::Stale => "stale",
                            Freshness::Expired => "expired",
                        },
                    };
                    ready &= matches!(label, "fresh" | "stale");
                    label
                };
                json!({"name": name, "discovery": state(DocKind::Discovery), "jwks": state(DocKind::Jwks)})
            })
            .collect();
        (ready, json!({"ready": ready, "issuers": issuers}))
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("a JSON value always serialises");
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Reject::MethodNotAllowed.response();
        }
        match request.uri().path() {
            "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => {
                let (ready, body) = self.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, &body)
            }
            _ => Reject::NotFound.response(),
        }
    }
}
