//! `Admin`: the operator's listener: `/healthz` (process alive), `/readyz` (per-document state).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::certs::CertResolver;
use crate::document::{CachePolicy, DocKind, Freshness};
use crate::health::HealthBoard;
use crate::response::{Body, Reject};
use crate::server::Handler;
use crate::store::{DocId, DocumentStore};

pub struct Admin {
    names: Vec<String>,
    store: Arc<DocumentStore>,
    health: Arc<HealthBoard>,
    certs: Option<Arc<CertResolver>>,
    policy: CachePolicy,
}

fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(humantime::format_rfc3339_seconds(t).to_string())
    })
}

impl Admin {
    pub fn new(
        names: Vec<String>,
        store: Arc<DocumentStore>,
        health: Arc<HealthBoard>,
        certs: Option<Arc<CertResolver>>,
        policy: CachePolicy,
    ) -> Admin {
        Admin {
            names,
            store,
            health,
            certs,
            policy,
        }
    }

    /// The certificates being served and the last refused reload, if any.
    fn tls(&self) -> serde_json::Value {
        let Some(resolver) = &self.certs else {
            return serde_json::Value::Null;
        };
        let certificates: Vec<_> = resolver
            .current()
            .certs
            .iter()
            .map(|c| {
                json!({
                    "file": c.cert_file.display().to_string(),
                    "names": c.names,
                    "not_after": rfc3339(Some(c.not_after)),
                })
            })
            .collect();
        json!({"certificates": certificates, "last_reload_error": resolver.last_error()})
    }

    /// One document's state as `/readyz` reports it, and whether it can be served.
    fn document(&self, id: DocId, now: SystemTime) -> (Freshness, serde_json::Value) {
        let doc = self.store.get(id);
        let freshness = doc
            .as_ref()
            .map_or(Freshness::Expired, |d| self.policy.freshness(d.fetched_at, now));
        let state = match (&doc, freshness) {
            (None, _) => "missing",
            (Some(_), Freshness::Fresh) => "fresh",
            (Some(_), Freshness::Stale) => "stale",
            (Some(_), Freshness::Expired) => "expired",
        };
        let record = self.health.get(id);
        let body = json!({
            "state": state,
            "age_seconds": doc.as_ref().map(|d| now.duration_since(d.fetched_at).unwrap_or_default().as_secs()),
            "fetched_at": rfc3339(doc.as_ref().map(|d| d.fetched_at)),
            "last_success": rfc3339(record.last_success),
            "last_attempt": rfc3339(record.last_attempt),
            "last_error": record.last_error,
            "last_error_at": rfc3339(record.last_error_at),
            "consecutive_failures": record.consecutive_failures,
            "failures_total": record.failures_total,
        });
        (freshness, body)
    }

    /// Ready when every document of every issuer can be served (fresh or stale).
    /// `status` is `fresh` (all fresh), `stale` (all servable, some from a failing
    /// upstream) or `unavailable` (something cannot be served).
    fn readiness(&self) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let mut worst = Freshness::Fresh;
        let issuers: Vec<_> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut report = |kind: DocKind| {
                    let (freshness, body) = self.document(DocId { issuer: i, kind }, now);
                    worst = match (worst, freshness) {
                        (Freshness::Expired, _) | (_, Freshness::Expired) => Freshness::Expired,
                        (Freshness::Stale, _) | (_, Freshness::Stale) => Freshness::Stale,
                        _ => Freshness::Fresh,
                    };
                    body
                };
                let discovery = report(DocKind::Discovery);
                let jwks = report(DocKind::Jwks);
                json!({"name": name, "discovery": discovery, "jwks": jwks})
            })
            .collect();
        let (ready, status) = match worst {
            Freshness::Fresh => (true, "fresh"),
            Freshness::Stale => (true, "stale"),
            Freshness::Expired => (false, "unavailable"),
        };
        (
            ready,
            json!({"ready": ready, "status": status, "issuers": issuers, "tls": self.tls()}),
        )
    }
}

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
