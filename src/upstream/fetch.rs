//! `Fetcher`: one bounded GET to an upstream, returning the body or a typed reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use http::header::HeaderValue;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::model::outcome::FetchOutcome;
use crate::upstream::checks::ValidationError;
use crate::upstream::permits::UpstreamPermits;
use crate::upstream::rotation::Unpublishable;

const USER_AGENT: &str = concat!("jwks-edge/", env!("CARGO_PKG_VERSION"));

/// Why a fetch produced nothing usable. Every variant leaves the last good copy in place.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid upstream URL {0:?}")]
    Url(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The fetch never started: other fetches to the same upstream held every permit.
    #[error(
        "not started within {waited:?}: {limit} other fetches to this upstream were in flight \
         all along (cache.max_fetches_per_upstream)"
    )]
    Queued { waited: Duration, limit: usize },
    #[error("connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("answered HTTP {status}{}", location.as_deref().map(|l| format!(", redirect to {l:?} not followed")).unwrap_or_default())]
    Status {
        status: StatusCode,
        location: Option<String>,
    },
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body could not be read")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("invalid document")]
    Invalid(#[source] ValidationError),
    /// A valid key set that leaves nothing to publish (every key withdrawn).
    #[error("key set not published")]
    Unpublishable(#[source] Unpublishable),
    /// The discovery document names a key set path that belongs to another issuer's
    /// routes; it is refused like an invalid document.
    #[error("{0}")]
    RouteConflict(String),
    #[error("cannot read the bearer token from {path:?}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// The outcome this failure is counted and logged as.
    pub fn outcome(&self) -> FetchOutcome {
        match self {
            FetchError::Url(_) => FetchOutcome::BadUrl,
            FetchError::Timeout(_) | FetchError::Queued { .. } => FetchOutcome::Timeout,
            // Refused, reset or failed TLS: the connection never carried an answer.
            FetchError::Connect(_) => FetchOutcome::Refused,
            FetchError::Status { .. } => FetchOutcome::Status,
            FetchError::TooLarge { .. } => FetchOutcome::TooLarge,
            FetchError::Body(_) => FetchOutcome::Body,
            FetchError::Invalid(_) | FetchError::Unpublishable(Unpublishable::NotAKeySet) => FetchOutcome::Invalid,
            FetchError::Unpublishable(Unpublishable::AllWithdrawn | Unpublishable::NoSigningKeyLeft) => {
                FetchOutcome::Withdrawn
            }
            FetchError::Token { .. } => FetchOutcome::Token,
            FetchError::RouteConflict(_) => FetchOutcome::RouteConflict,
        }
    }
}

/// What an upstream needs besides TLS trust: credentials and a chosen `Host`.
#[derive(Clone, Debug, Default)]
pub struct UpstreamAccess {
    /// Re-read before every fetch: Kubernetes rotates service-account tokens on disk.
    pub bearer_token_file: Option<PathBuf>,
    pub host: Option<HeaderValue>,
}

/// Idle connections a client keeps to each upstream authority; the open-file check
/// (`edge/fd_limit.rs`) counts them.
pub const IDLE_PER_AUTHORITY: usize = 2;

/// A pooled HTTP(S) client with the proxy's bounds. Cheap to clone.
///
/// Only what the proxy chooses is sent upstream: `GET`, `Accept`, `User-Agent`, `Host`
/// (the URL's, or `upstream_host`) and the configured bearer token. Nothing from a client
/// request ever reaches a `Fetcher`.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
    access: UpstreamAccess,
    /// Shared by every issuer's `Fetcher`: bounds the fetches in flight per upstream.
    permits: Arc<UpstreamPermits>,
    /// The longest a fetch waits for a permit before it fails as `Queued`.
    queue_timeout: Duration,
}

impl Fetcher {
    /// `timeout` bounds the whole exchange, connect included; `max_bytes` the body.
    /// `permits` bounds the fetches in flight per upstream; the wait for one is not part
    /// of `timeout` (which bounds the request to the IdP) but of `queue_timeout`.
    pub fn new(
        tls: rustls::ClientConfig,
        timeout: Duration,
        max_bytes: usize,
        access: UpstreamAccess,
        permits: Arc<UpstreamPermits>,
        queue_timeout: Duration,
    ) -> Fetcher {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(IDLE_PER_AUTHORITY)
            .build(https);
        Fetcher {
            client,
            timeout,
            max_bytes,
            access,
            permits,
            queue_timeout,
        }
    }

    /// This fetcher's client (connection pool, TLS config and session cache) and bounds,
    /// with another issuer's `access`: issuers with one trust setting share them.
    pub fn with_access(&self, access: UpstreamAccess) -> Fetcher {
        Fetcher { access, ..self.clone() }
    }

    /// GETs `url` and returns the body of a 200 answer.
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
        // Held until the body is read, so the bound counts whole exchanges.
        let _permit = tokio::time::timeout(self.queue_timeout, self.permits.acquire(&uri))
            .await
            .map_err(|_| FetchError::Queued {
                waited: self.queue_timeout,
                limit: self.permits.limit(),
            })?;
        tokio::time::timeout(self.timeout, async {
            let request = self.request(uri, url).await?;
            self.exchange(request).await
        })
        .await
        .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn request(&self, uri: Uri, url: &str) -> Result<Request<Empty<Bytes>>, FetchError> {
        let mut request = Request::get(uri)
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::new())
            .map_err(|_| FetchError::Url(url.to_owned()))?;
        if let Some(host) = &self.access.host {
            request.headers_mut().insert(header::HOST, host.clone());
        }
        if let Some(path) = &self.access.bearer_token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| FetchError::Token {
                    path: path.clone(),
                    source,
                })?;
            let value = HeaderValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| FetchError::Token {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the token is not a valid header value"),
            })?;
            let mut value = value;
            value.set_sensitive(true);
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    async fn exchange(&self, request: Request<Empty<Bytes>>) -> Result<Bytes, FetchError> {
        let response = self.client.request(request).await.map_err(FetchError::Connect)?;
        if response.status() != StatusCode::OK {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Err(FetchError::Status {
                status: response.status(),
                location,
            });
        }
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(FetchError::TooLarge { limit: self.max_bytes });
        }
        let body = Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge { limit: self.max_bytes }
                } else {
                    FetchError::Body(err)
                }
            })?;
        // A body that came in one read is a slice of the connection's read buffer (8 KiB
        // or more), and whatever keeps the document would keep that whole buffer alive:
        // 7.5 KiB per issuer at 1,000 issuers. One copy per fetch keeps only the bytes.
        Ok(Bytes::copy_from_slice(&body.to_bytes()))
    }
}
