//! `Admin`: the operator's listener: `/healthz`, `/readyz`, `/metrics`, `POST /admin/refresh`
//! and `POST /admin/drop-retained`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::cache::health::HealthBoard;
use crate::cache::key_board::KeyBoard;
use crate::cache::store::DocumentStore;
use crate::config::{Issuer, Readiness};
use crate::edge::connection::{Body, ConnInfo, Handler};
use crate::edge::reject::{Allow, Reject, RETRY_AFTER};
use crate::model::document::{CachePolicy, DocKind, Freshness};
use crate::model::DocId;
use crate::telemetry::metrics::Metrics;
use crate::tls::acme::AcmeStatus;
use crate::tls::resolver::CertResolver;
use crate::upstream::refresh::RefreshControl;

/// The admin listener's state. Built by `App`; every field is read-only here.
pub struct Admin {
    /// The configured issuers, in config order (their index is their `DocId::issuer`).
    pub issuers: Vec<Issuer>,
    pub store: Arc<DocumentStore>,
    pub health: Arc<HealthBoard>,
    /// Each issuer's keys and their history, from its key set refresher.
    pub keys: Arc<KeyBoard>,
    pub certs: Option<Arc<CertResolver>>,
    /// The ACME certificates' state, with `[server.tls.acme]`.
    pub acme: Option<Arc<AcmeStatus>>,
    pub policy: CachePolicy,
    pub metrics: Arc<Metrics>,
    pub refresh: Vec<RefreshControl>,
    /// The file holding the token admin actions (`POST /admin/...`) require; `None`
    /// turns them off. Read at each request, so it can be rotated without a restart.
    pub token_file: Option<PathBuf>,
    pub readiness: Readiness,
    pub startup: Startup,
}

/// The start-up phase of `/readyz`: "starting" (503) until every document has had a
/// servable copy or the grace has passed, whichever is first; then over for good.
pub struct Startup {
    pub began: Instant,
    pub grace: Duration,
    /// Set once by the first `/readyz` that finds start-up over; read by later ones.
    over: AtomicBool,
}

impl Startup {
    pub fn new(grace: Duration) -> Startup {
        Startup {
            began: Instant::now(),
            grace,
            over: AtomicBool::new(false),
        }
    }

    /// Whether start-up is over, given whether every document can be served now.
    fn over(&self, all_servable: bool) -> bool {
        if self.over.load(Ordering::Relaxed) {
            return true;
        }
        let over = all_servable || self.began.elapsed() >= self.grace;
        if over {
            self.over.store(true, Ordering::Relaxed);
        }
        over
    }
}

/// What `/readyz` found, document by document.
struct Survey {
    issuers: Vec<serde_json::Value>,
    documents: usize,
    servable: usize,
    /// Fresh if every servable document is fresh, else stale.
    worst: Freshness,
}

fn rfc3339(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(crate::model::timestamp::rfc3339_seconds(t).to_string())
    })
}

fn unix_seconds(t: SystemTime) -> f64 {
    crate::model::timestamp::unix_seconds_f64(t)
}

/// Equal without revealing, through timing, how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Admin {
    /// The certificates being served, the last refused reload, and with ACME each
    /// certificate's renewal state; then whether every configured name has a valid
    /// certificate, and whether any has (without one, no HTTPS handshake succeeds).
    fn tls(&self, now: SystemTime) -> (bool, bool, serde_json::Value) {
        let Some(resolver) = &self.certs else {
            return (true, true, serde_json::Value::Null);
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
            return (true, true, body);
        };
        let (mut all, mut any) = (true, false);
        let records: Vec<_> = acme
            .records()
            .iter()
            .map(|r| {
                let state = r.state(now);
                let valid = !matches!(state, "missing" | "expired");
                all &= valid;
                any |= valid;
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
        (all, any, body)
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

    /// The issuer's keys: the published ones (`current`, `retained`) and the `withdrawn`
    /// ones the upstream lists, with their history.
    fn keys_report(&self, issuer: usize) -> serde_json::Value {
        let summary = self.keys.get(issuer);
        let keys: Vec<_> = summary
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "kty": k.kty,
                    "state": k.state.as_str(),
                    "first_seen": rfc3339(Some(k.first_seen)),
                    "last_seen_upstream": rfc3339(Some(k.last_seen_upstream)),
                    "removed_at": rfc3339(k.removed_at),
                    "expires_at": rfc3339(k.expires_at),
                })
            })
            .collect();
        json!(keys)
    }

    /// Every document's state (of one issuer, or of all) and how many can be served.
    fn survey(&self, only: Option<usize>, now: SystemTime) -> Survey {
        let mut survey = Survey {
            issuers: Vec::new(),
            documents: 0,
            servable: 0,
            worst: Freshness::Fresh,
        };
        for (i, issuer) in self.issuers.iter().enumerate() {
            if only.is_some_and(|only| only != i) {
                continue;
            }
            let mut issuer_servable = true;
            let mut report = |kind: DocKind| {
                let (freshness, body) = self.document(DocId { issuer: i, kind }, now);
                survey.documents += 1;
                match freshness {
                    Freshness::Expired => issuer_servable = false,
                    Freshness::Stale => {
                        survey.servable += 1;
                        survey.worst = Freshness::Stale;
                    }
                    Freshness::Fresh => survey.servable += 1,
                }
                body
            };
            let discovery = report(DocKind::Discovery);
            let jwks = report(DocKind::Jwks);
            let keys = self.keys_report(i);
            let mismatch = self
                .health
                .get(DocId::discovery(i))
                .issuer_mismatch
                .map(|upstream| json!({"upstream_issuer": upstream, "public_url": issuer.public_url}));
            survey.issuers.push(json!({
                "name": issuer.name,
                "servable": issuer_servable,
                "issuer_mismatch": mismatch,
                "discovery": discovery,
                "jwks": jwks,
                "keys": keys,
            }));
        }
        survey
    }

    /// The process's readiness: during start-up (see `Startup`) 503 `starting`; then,
    /// with `admin.readiness = "any"`, 200 while at least one document can be served
    /// (`degraded` when some cannot), and with `"all"` only while every one can.
    /// `status` is `starting`, `fresh`, `stale`, `degraded` or `unavailable`.
    fn readiness(&self) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let survey = self.survey(None, now);
        let all_servable = survey.servable == survey.documents;
        let (tls_all, tls_any, tls) = self.tls(now);
        let settled = match survey.worst {
            Freshness::Stale => "stale",
            _ => "fresh",
        };
        let (ready, status) = if !self.startup.over(all_servable) {
            (false, "starting")
        } else {
            match self.readiness {
                Readiness::All if all_servable && tls_all => (true, settled),
                Readiness::All => (false, "unavailable"),
                Readiness::Any if survey.servable == 0 || !tls_any => (false, "unavailable"),
                Readiness::Any if !all_servable || !tls_all => (true, "degraded"),
                Readiness::Any => (true, settled),
            }
        };
        let body = json!({
            "ready": ready,
            "status": status,
            "mode": self.readiness.as_str(),
            "documents": survey.documents,
            "servable": survey.servable,
            "issuers": survey.issuers,
            "tls": tls,
        });
        (ready, body)
    }

    /// `/readyz?issuer=NAME`: 200 while both of the issuer's documents can be served and
    /// its upstream's `issuer` is the public URL, 503 otherwise; for monitors and
    /// external probes, never for taking a replica out of service.
    fn issuer_readiness(&self, index: usize) -> (bool, serde_json::Value) {
        let now = SystemTime::now();
        let survey = self.survey(Some(index), now);
        let report = &survey.issuers[0];
        let (ready, status) = if survey.servable < survey.documents {
            (false, "unavailable")
        } else if !report["issuer_mismatch"].is_null() {
            (false, "issuer_mismatch")
        } else if survey.worst == Freshness::Stale {
            (true, "stale")
        } else {
            (true, "fresh")
        };
        (
            ready,
            json!({"ready": ready, "status": status, "issuers": survey.issuers}),
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
        for issuer in 0..self.issuers.len() {
            for kind in [DocKind::Discovery, DocKind::Jwks] {
                let id = DocId { issuer, kind };
                let doc = self.store.get(id);
                let age = doc
                    .as_ref()
                    .map(|d| now.duration_since(d.fetched_at).unwrap_or_default());
                let servable = doc.is_some_and(|d| self.policy.freshness(d.fetched_at, now) != Freshness::Expired);
                let record = self.health.get(id);
                self.metrics
                    .set_document(id, age, record.last_success.map(unix_seconds), servable);
                if kind == DocKind::Discovery {
                    self.metrics
                        .set_issuer_mismatch(issuer, record.issuer_mismatch.is_some());
                }
            }
            let published = match self.store.get(DocId::jwks(issuer)) {
                Some(_) => self.keys.get(issuer).published,
                None => 0,
            };
            self.metrics.set_published_keys(issuer, published);
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

    /// `POST /admin/refresh[?issuer=NAME]`: fetches now and reports each outcome. A
    /// refresher that already has requests queued (it may be waiting for the first
    /// discovery document) makes the answer 503: this never waits for queue room.
    async fn refresh(&self, request: &Request<Incoming>) -> Response<Body> {
        let Some(selected) = self.selected(request) else {
            return Reject::UnknownIssuer.response();
        };
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
        let (mut all_ok, mut busy) = (true, false);
        let issuers: Vec<_> = results
            .into_iter()
            .map(|(_, name, discovery, jwks)| {
                all_ok &= discovery.is_ok() && jwks.is_ok();
                let mut report = |r: Result<(), Asked<String>>| match r {
                    Ok(()) => json!({"ok": true}),
                    Err(Asked::Busy) => {
                        busy = true;
                        json!({"ok": false, "error": "busy: a refresh is already queued"})
                    }
                    Err(Asked::Refused(error) | Asked::Failed(error)) => json!({"ok": false, "error": error}),
                };
                json!({"name": name, "discovery": report(discovery), "jwks": report(jwks)})
            })
            .collect();
        let status = match (all_ok, busy) {
            (true, _) => StatusCode::OK,
            (false, true) => StatusCode::SERVICE_UNAVAILABLE,
            (false, false) => StatusCode::BAD_GATEWAY,
        };
        let mut response = json_response(status, &json!({"ok": all_ok, "issuers": issuers}));
        if busy {
            response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER);
        }
        response
    }

    /// `POST /admin/drop-retained[?issuer=NAME]`: stops publishing retained keys now and
    /// answers once the published copies no longer hold them, with the `kid`s dropped.
    /// 409 when dropping would leave an issuer no key to publish (nothing is dropped
    /// there); 503 with `Retry-After` when a refresher has requests queued.
    async fn drop_retained(&self, request: &Request<Incoming>) -> Response<Body> {
        let Some(selected) = self.selected(request) else {
            return Reject::UnknownIssuer.response();
        };
        // The key set refresher may be in the middle of one fetch.
        let wait = self.policy.fetch_timeout + Duration::from_secs(2);
        let mut tasks = tokio::task::JoinSet::new();
        for (order, control) in selected.into_iter().cloned().enumerate() {
            tasks.spawn(async move { (order, control.name, ask(&control.drop_retained, wait).await) });
        }
        let mut results = tasks.join_all().await;
        results.sort_by_key(|r| r.0);
        let (mut busy, mut refused, mut failed) = (false, false, false);
        let issuers: Vec<_> = results
            .into_iter()
            .map(|(_, name, outcome)| match outcome {
                Ok(dropped) => json!({"name": name, "ok": true, "dropped": dropped}),
                Err(Asked::Busy) => {
                    busy = true;
                    json!({"name": name, "ok": false, "error": "busy: requests are already queued"})
                }
                Err(Asked::Refused(reason)) => {
                    refused = true;
                    json!({"name": name, "ok": false, "error": reason.to_string()})
                }
                Err(Asked::Failed(error)) => {
                    failed = true;
                    json!({"name": name, "ok": false, "error": error})
                }
            })
            .collect();
        let status = if failed {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if busy {
            StatusCode::SERVICE_UNAVAILABLE
        } else if refused {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        };
        let ok = status == StatusCode::OK;
        let mut response = json_response(status, &json!({"ok": ok, "issuers": issuers}));
        if busy {
            response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER);
        }
        response
    }

    /// The refreshers an admin action is for: every issuer's, or `?issuer=NAME`'s;
    /// `None` when no issuer has that name.
    fn selected(&self, request: &Request<Incoming>) -> Option<Vec<&RefreshControl>> {
        let wanted = query_param(request.uri(), "issuer");
        let selected: Vec<&RefreshControl> = self
            .refresh
            .iter()
            .filter(|c| wanted.as_deref().is_none_or(|name| c.name == name))
            .collect();
        (!selected.is_empty()).then_some(selected)
    }

    fn issuer_index(&self, name: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.name == name)
    }
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

/// Why a refresher gave no success: its queue was full, it refused (`E`, its own
/// reason), or it did not answer.
enum Asked<E> {
    /// Its queue is full: a request is already pending.
    Busy,
    Refused(E),
    Failed(String),
}

/// Sends a request to a refresher and waits (bounded) for its answer; never waits for
/// room in its queue.
async fn ask<T, E>(
    refresher: &tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<T, E>>>,
    wait: Duration,
) -> Result<T, Asked<E>> {
    use tokio::sync::mpsc::error::TrySendError;
    let stopped = || Asked::Failed("the refresher has stopped".to_owned());
    let (reply, outcome) = tokio::sync::oneshot::channel();
    match refresher.try_send(reply) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(Asked::Busy),
        Err(TrySendError::Closed(_)) => return Err(stopped()),
    }
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(outcome)) => outcome.map_err(Asked::Refused),
        Ok(Err(_)) => Err(stopped()),
        Err(_) => Err(Asked::Failed(format!("no outcome within {wait:?}"))),
    }
}

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
            if path == "/admin/drop-retained" {
                return self.drop_retained(&request).await;
            }
            return self.refresh(&request).await;
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Reject::MethodNotAllowed(Allow::GetHead).response();
        }
        match path {
            "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => {
                let (ready, body) = match query_param(request.uri(), "issuer") {
                    None => self.readiness(),
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
