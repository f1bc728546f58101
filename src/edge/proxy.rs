//! `Proxy`: answers one request from the store (route, method, freshness, conditional).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::cache::revalidate::Revalidations;
use crate::cache::routes::{Route, Router};
use crate::cache::store::DocumentStore;
use crate::edge::access_log::{AccessEntry, AccessLog};
use crate::edge::connection::{Body, ConnInfo, Handler};
use crate::edge::reject::{Allow, Reject};
use crate::model::client_family::ClientFamily;
use crate::model::document::{CachePolicy, CacheStatus, Document, Freshness};
use crate::model::DocId;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::reach::ReachBoard;
use crate::tls::challenges::{Challenges, HTTP_CHALLENGE_PREFIX};

/// The request handler shared by every public listener. It only reads the store: no
/// request fetches, and none waits on a fetch while a copy exists. A request for an
/// aging key set may poke that key set's refresher (`revalidate`), which the limiter
/// grants at most once per `cache.revalidate_after` whatever the traffic; query strings
/// and headers play no part in it.
pub struct Proxy {
    router: Arc<Router>,
    store: Arc<DocumentStore>,
    policy: CachePolicy,
    /// Every response starts within this, counted from when the request was parsed.
    deadline: Duration,
    metrics: Arc<Metrics>,
    /// Where every request gets a line, when the access log is on.
    access_log: Option<AccessLog>,
    /// HTTP-01 answers, when ACME validates over plain HTTP.
    acme_http: Option<Arc<Challenges>>,
    /// Where requests poke the key set refreshers; without it, nothing is revalidated.
    revalidation: Option<Arc<Revalidations>>,
    /// Where each document request is counted by client family, for the status page.
    reach: Option<Arc<ReachBoard>>,
}

/// What a request turned out to be, for metrics and the access log.
#[derive(Default)]
struct Outcome<'r> {
    host: Option<&'r str>,
    doc: Option<DocId>,
    cache: Option<CacheStatus>,
    /// When the copy served was judged, so counting the request reads no clock again.
    now: Option<SystemTime>,
}

impl Proxy {
    pub fn new(
        router: Arc<Router>,
        store: Arc<DocumentStore>,
        policy: CachePolicy,
        deadline: Duration,
        metrics: Arc<Metrics>,
        access_log: Option<AccessLog>,
    ) -> Proxy {
        Proxy {
            router,
            store,
            policy,
            deadline,
            metrics,
            access_log,
            acme_http: None,
            revalidation: None,
            reach: None,
        }
    }

    /// Counts every document request by client family, stale copy and 503 in `reach`.
    pub fn with_reach(mut self, reach: Arc<ReachBoard>) -> Proxy {
        self.reach = Some(reach);
        self
    }

    /// Lets requests for aging key sets poke their refreshers through `revalidation`.
    pub fn with_revalidation(mut self, revalidation: Arc<Revalidations>) -> Proxy {
        self.revalidation = Some(revalidation);
        self
    }

    /// Also answers `GET /.well-known/acme-challenge/{token}` from `challenges` (any host:
    /// the CA asks for each domain being validated).
    pub fn with_acme_http(mut self, challenges: Arc<Challenges>) -> Proxy {
        self.acme_http = Some(challenges);
        self
    }

    pub async fn respond<B: hyper::body::Body>(&self, request: Request<B>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let response = match self.answer(&request, started, &mut outcome).await {
            Ok(response) => response,
            Err(reject) => {
                let mut response = reject.response();
                if reject.closes_connection() && request.version() <= Version::HTTP_11 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics.request(outcome.doc, status, outcome.cache, elapsed);
        // One clock read for the relying-party count and the log line: a served document
        // read it already to judge freshness.
        let now = outcome.now.unwrap_or_else(SystemTime::now);
        if let (Some(reach), Some(doc)) = (&self.reach, outcome.doc) {
            let agent = request.headers().get(header::USER_AGENT).map(HeaderValue::as_bytes);
            let stale = outcome.cache == Some(CacheStatus::Stale);
            reach.record(doc, ClientFamily::classify(agent), status, stale, now);
        }
        if let Some(log) = &self.access_log {
            log.record(
                &AccessEntry {
                    listener: conn.listener.as_str(),
                    peer: conn.peer,
                    method: request.method().as_str(),
                    host: outcome.host.unwrap_or("-"),
                    path: request.uri().path(),
                    status,
                    cache: outcome.cache.map_or("-", CacheStatus::as_str),
                    micros: elapsed.as_micros() as u64,
                },
                now,
            );
        }
        response
    }

    async fn answer<'r, B: hyper::body::Body>(
        &self,
        request: &'r Request<B>,
        started: Instant,
        outcome: &mut Outcome<'r>,
    ) -> Result<Response<Body>, Reject> {
        let deadline = started + self.deadline;
        let host = request_host(request);
        outcome.host = host;
        let headers = request.headers();
        if headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Err(Reject::AmbiguousHost);
        }
        if headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Reject::AmbiguousFraming);
        }
        if !request.body().is_end_stream() {
            return Err(Reject::BodyNotAllowed);
        }
        let host = host.ok_or(Reject::MissingHost)?;
        let path = request.uri().path();
        // Only with HTTP-01 configured; otherwise the path is not even looked at.
        let token = self
            .acme_http
            .as_ref()
            .and_then(|challenges| Some((challenges, path.strip_prefix(HTTP_CHALLENGE_PREFIX)?)));
        if let Some((challenges, token)) = token {
            if let (Some(answer), &Method::GET | &Method::HEAD) = (challenges.http(token), request.method()) {
                let mut response = Response::new(Full::new(Bytes::from(answer)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                return Ok(response);
            }
        }
        let id = match self.router.route(host, path) {
            Route::Doc(id) => id,
            Route::NotFound => return Err(Reject::NotFound),
            Route::Pending(issuer) => {
                // Cold start: the key set path comes with the first discovery document,
                // whose refresher publishes it in a new table.
                match self.router.learned(issuer, deadline).await.route(host, path) {
                    Route::Doc(id) => id,
                    Route::Pending(_) => return Err(Reject::NotReady),
                    Route::NotFound => return Err(Reject::NotFound),
                }
            }
        };
        outcome.doc = Some(id);
        match *request.method() {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS => return Ok(preflight()),
            _ => return Err(Reject::MethodNotAllowed(Allow::GetHeadOptions)),
        }
        let (doc, status, now) = self.current(id, started, deadline).await?;
        outcome.cache = Some(status);
        outcome.now = Some(now);
        Ok(self.render(&doc, status, request, now))
    }

    /// The copy to serve, how it was obtained, and the time it is judged at (used for
    /// `Age` too), waiting (bounded) only when no copy exists. `started` is when the
    /// request was parsed, the revalidation limiter's clock.
    async fn current(
        &self,
        id: DocId,
        started: Instant,
        deadline: Instant,
    ) -> Result<(Arc<Document>, CacheStatus, SystemTime), Reject> {
        let (doc, waited) = match self.store.get(id) {
            Some(doc) => (doc, false),
            None => (self.store.wait(id, deadline).await.ok_or(Reject::NotReady)?, true),
        };
        let now = SystemTime::now();
        // Before the freshness verdict: an expired copy is the one most in need of it.
        if let Some(revalidation) = &self.revalidation {
            revalidation.consider(id, doc.fetched_at, now, started);
        }
        let status = match self.policy.freshness(doc.fetched_at, now) {
            Freshness::Fresh if waited => CacheStatus::Collapsed,
            Freshness::Fresh => CacheStatus::Hit,
            Freshness::Stale => CacheStatus::Stale,
            Freshness::Expired => return Err(Reject::Expired),
        };
        Ok((doc, status, now))
    }

    fn render<B>(&self, doc: &Document, status: CacheStatus, request: &Request<B>, now: SystemTime) -> Response<Body> {
        let headers = doc.response_headers(status, now);
        let not_modified = request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .any(|value| doc.matches(value));
        let (code, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else if request.method() == Method::HEAD {
            (StatusCode::OK, Bytes::new())
        } else {
            (StatusCode::OK, doc.body.clone())
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = code;
        *response.headers_mut() = headers;
        if code == StatusCode::OK && request.method() == Method::HEAD {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(doc.body.len()));
        }
        response
    }
}

/// The answer to a CORS preflight (`OPTIONS`) on a document.
fn preflight() -> Response<Body> {
    let allow = Allow::GetHeadOptions.header();
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, allow.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("if-none-match, cache-control"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// The host a request is for: the request target's authority (HTTP/2 `:authority`,
/// HTTP/1.1 absolute form) or else the `Host` header.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    request.headers().get(header::HOST).and_then(|h| h.to_str().ok())
}

impl Handler for Proxy {
    async fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        self.respond(request, conn).await
    }
}
