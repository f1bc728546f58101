//! `Admin`: the operator's listener: `/healthz`, `/readyz`, `/metrics` and `POST /admin/refresh`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::acme::AcmeStatus;
use crate::certs::CertResolver;
use crate::document::{CachePolicy, DocKind, Freshness};
use crate::health::HealthBoard;
use crate::metrics::Metrics;
use crate::refresh::{RefreshControl, RefreshRequest};
use crate::response::{Body, Reject};
use crate::server::{ConnInfo, Handler};
use crate::store::{DocId, DocumentStore};

/// The admin listener's state. Built by `App`; every field is read-only here.
pub struct Admin {
    pub names: Vec<String>,
    pub store: Arc<DocumentStore>,
    pub health: Arc<HealthBoard>,
    pub certs: Option<Arc<CertResolver>>,
    /// The ACME certificates' state, with `[server.tls.acme]`.
    pub acme: Option<Arc<AcmeStatus>>,
    pub policy: CachePolicy,
    pub metrics: Arc<Metrics>,
    pub refresh: Vec<RefreshControl>,
    /// The file holding the token `POST /admin/refresh` requires; `None` turns admin
    /// actions off. Read at each request, so it can be rotated without a restart.
    pub token_file: Option<PathBuf>,
}

fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(crate::timestamp::rfc3339_seconds(t).to_string())
    })
}

fn unix_seconds(t: SystemTime) -> f64 {
    crate::timestamp::unix_seconds_f64(t)
}

/// Equal without revealing, through timing, how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Admin {
    /// The certificates being served, the last refused reload, and with ACME each
    /// certificate's renewal state; false when some configured name has no valid
    /// certificate (HTTPS handshakes for it fail).
    fn tls(&self, now: SystemTime) -> (bool, serde_json::Value) {
        let Some(resolver) = &self.certs else {
            return (true, serde_json::Value::Null);
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
        let mut body = json!({"certificates": certificates, "last_reload_error": resolver.last_error()});
        let Some(acme) = &self.acme else {
            return (true, body);
        };
        let mut ready = true;
        let records: Vec<_> = acme
            .records()
            .iter()
            .map(|r| {
                let state = r.state(now);
                ready &= !matches!(state, "missing" | "expired");
                json!({
                    "names": r.names,
                    "state": state,
                    "not_after": rfc3339(r.not_after),
                    "renew_at": rfc3339(r.renew_at),
                    "last_attempt": rfc3339(r.last_attempt),
                    "last_error": r.last_error,
                    "consecutive_failures": r.consecutive_failures,
                    "next_attempt": rfc3339(r.next_attempt),
                })
            })
            .collect();
        body["acme"] = json!({
            "directory": acme.directory,
            "challenge": acme.challenge.as_str(),
            "certificates": records,
        });
        (ready, body)
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
        let (tls_ready, tls) = self.tls(now);
        let (ready, status) = match worst {
            _ if !tls_ready => (false, "unavailable"),
            Freshness::Fresh => (true, "fresh"),
            Freshness::Stale => (true, "stale"),
            Freshness::Expired => (false, "unavailable"),
        };
        (
            ready,
            json!({"ready": ready, "status": status, "issuers": issuers, "tls": tls}),
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

impl Admin {
    /// Point-in-time gauges are set from the store and health records at scrape time.
    fn metrics_text(&self) -> String {
        let now = SystemTime::now();
        for issuer in 0..self.names.len() {
            for kind in [DocKind::Discovery, DocKind::Jwks] {
                let id = DocId { issuer, kind };
                let age = self
                    .store
                    .get(id)
                    .map(|d| now.duration_since(d.fetched_at).unwrap_or_default());
                let last_success = self.health.get(id).last_success.map(unix_seconds);
                self.metrics.set_document(id, age, last_success);
            }
        }
        if let Some(resolver) = &self.certs {
            let set = resolver.current();
            self.metrics.set_certificates(
                set.certs
                    .iter()
                    .map(|c| (c.cert_file.display().to_string(), unix_seconds(c.not_after))),
            );
        }
        self.metrics.encode()
    }

    /// Whether the request carries the admin token; `None` when admin actions are off.
    async fn authorized<B>(&self, request: &Request<B>) -> Option<Result<(), Response<Body>>> {
        let path = self.token_file.as_ref()?;
        let expected = match tokio::fs::read_to_string(path).await {
            Ok(token) => token.trim().to_owned(),
            Err(err) => {
                tracing::error!(path = %path.display(), "cannot read admin.token_file: {err}");
                let body = json!({"error": "token_unavailable", "message": "the admin token cannot be read"});
                return Some(Err(json_response(StatusCode::INTERNAL_SERVER_ERROR, &body)));
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
        let body = json!({"error": "unauthorized", "message": "a valid Authorization: Bearer token is required"});
        let mut response = json_response(StatusCode::UNAUTHORIZED, &body);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(Err(response))
    }

    /// `POST /admin/refresh[?issuer=NAME]`: fetches now and reports each outcome.
    async fn refresh(&self, request: &Request<Incoming>) -> Response<Body> {
        let wanted = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("issuer="));
        let selected: Vec<&RefreshControl> = self
            .refresh
            .iter()
            .filter(|c| wanted.is_none_or(|name| c.name == name))
            .collect();
        if selected.is_empty() {
            let body = json!({"error": "unknown_issuer", "message": "no issuer has this name"});
            return json_response(StatusCode::NOT_FOUND, &body);
        }
        // Each fetch is bounded by fetch_timeout; allow for both documents in turn.
        let wait = self.policy.fetch_timeout * 2 + Duration::from_secs(1);
        let mut tasks = tokio::task::JoinSet::new();
        for (order, control) in selected.into_iter().cloned().enumerate() {
            tasks.spawn(async move {
                let discovery = ask(&control.discovery, wait).await;
                let jwks = ask(&control.jwks, wait).await;
                (order, control.name, discovery, jwks)
            });
        }
        let mut results = tasks.join_all().await;
        results.sort_by_key(|r| r.0);
        let mut all_ok = true;
        let issuers: Vec<_> = results
            .into_iter()
            .map(|(_, name, discovery, jwks)| {
                all_ok &= discovery.is_ok() && jwks.is_ok();
                let report = |r: Result<(), String>| match r {
                    Ok(()) => json!({"ok": true}),
                    Err(error) => json!({"ok": false, "error": error}),
                };
                json!({"name": name, "discovery": report(discovery), "jwks": report(jwks)})
            })
            .collect();
        let status = if all_ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        json_response(status, &json!({"ok": all_ok, "issuers": issuers}))
    }
}

/// Asks one refresher to fetch now and waits (bounded) for its outcome.
async fn ask(refresher: &tokio::sync::mpsc::Sender<RefreshRequest>, wait: Duration) -> Result<(), String> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if refresher.send(reply).await.is_err() {
        return Err("the refresher has stopped".to_owned());
    }
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err("the refresher has stopped".to_owned()),
        Err(_) => Err(format!("no outcome within {wait:?}")),
    }
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        let path = request.uri().path();
        if path == "/admin/refresh" {
            let Some(authorized) = self.authorized(&request).await else {
                return Reject::NotFound.response();
            };
            if let Err(response) = authorized {
                return response;
            }
            if request.method() != Method::POST {
                let mut response = Reject::MethodNotAllowed.response();
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
            return self.refresh(&request).await;
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Reject::MethodNotAllowed.response();
        }
        match path {
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
