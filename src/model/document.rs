//! `Document`: one ready-to-send public document, with headers rendered once per fill.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::model::jwks_target::JwksTarget;

/// Which of an issuer's two documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocKind {
    Discovery,
    Jwks,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Discovery => "discovery",
            DocKind::Jwks => "jwks",
        }
    }
}

/// The freshness policy every document is served under (from `[cache]`).
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    /// What relying parties are told they may cache.
    pub max_age: Duration,
    /// Background refresh period.
    pub refresh: Duration,
    /// Upper bound of one upstream fetch.
    pub fetch_timeout: Duration,
    /// How long after its fetch a copy is still served while the upstream fails.
    pub stale_if_error: Duration,
}

impl CachePolicy {
    /// How old a copy may get while the refresher keeps up: one period plus one fetch.
    pub fn fresh_for(&self) -> Duration {
        self.refresh + self.fetch_timeout
    }

    /// Where a copy fetched at `fetched_at` stands at `now`.
    pub fn freshness(&self, fetched_at: SystemTime, now: SystemTime) -> Freshness {
        // A clock that went backwards makes the copy look new, never expired.
        let age = now.duration_since(fetched_at).unwrap_or_default();
        if age <= self.fresh_for() {
            Freshness::Fresh
        } else if age <= self.stale_if_error {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Refreshed within the last period: the upstream is answering.
    Fresh,
    /// Refreshes are failing; the last good copy is served (stale-if-error).
    Stale,
    /// Too old to serve (past `stale_if_error`).
    Expired,
}

/// How a response was produced; one vocabulary for headers, logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// A fresh copy from memory.
    Hit,
    /// A stale copy from memory, because refreshes are failing.
    Stale,
    /// No copy yet: the request waited for the background fetch it shares with others.
    Collapsed,
}

impl CacheStatus {
    /// Every status, in declaration order (so `status as usize` indexes it).
    pub const ALL: [CacheStatus; 3] = [CacheStatus::Hit, CacheStatus::Stale, CacheStatus::Collapsed];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Stale => "stale",
            CacheStatus::Collapsed => "collapsed",
        }
    }

    /// The RFC 9211 `Cache-Status` value.
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheStatus::Hit => "jwks-edge; hit",
            CacheStatus::Stale => "jwks-edge; hit; detail=stale-if-error",
            CacheStatus::Collapsed => "jwks-edge; fwd=miss; collapsed; stored",
        })
    }
}

/// A validated, rewritten document exactly as relying parties receive it.
#[derive(Debug)]
pub struct Document {
    pub kind: DocKind,
    pub body: Bytes,
    /// When the upstream answered with this content (drives `Age` and staleness).
    pub fetched_at: SystemTime,
    /// For a discovery document: where its key set is published and fetched.
    pub jwks: Option<JwksTarget>,
    /// Strong validator, quoted.
    pub etag: HeaderValue,
    /// Every response header that does not depend on the request or the clock.
    headers: HeaderMap,
}

pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

impl Document {
    pub fn new(
        kind: DocKind,
        body: Bytes,
        fetched_at: SystemTime,
        jwks: Option<JwksTarget>,
        policy: &CachePolicy,
    ) -> Document {
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let mut etag = String::with_capacity(2 + 32);
        etag.push('"');
        for byte in &digest.as_ref()[..16] {
            etag.push_str(&format!("{byte:02x}"));
        }
        etag.push('"');
        let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");

        let mut headers = HeaderMap::with_capacity(10);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!(
                "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
                policy.max_age.as_secs(),
                policy.refresh.as_secs(),
                policy.stale_if_error.as_secs()
            ))
            .expect("digits are a valid header value"),
        );
        headers.insert(header::ETAG, etag.clone());
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, age, cache-status"),
        );
        Document {
            kind,
            body,
            fetched_at,
            jwks,
            etag,
            headers,
        }
    }

    /// Whether an `If-None-Match` value matches this document (weak comparison, as
    /// RFC 9110 requires for `If-None-Match`).
    pub fn matches(&self, if_none_match: &HeaderValue) -> bool {
        let Ok(list) = if_none_match.to_str() else {
            return false;
        };
        let ours = self.etag.as_bytes();
        list.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
    }

    /// One of the headers that do not depend on the request or the clock, as every
    /// response carries it (the publisher writes `Content-Type` and `Cache-Control`).
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.get(name)
    }

    /// The response headers for this document at `now`.
    pub fn response_headers(&self, status: CacheStatus, now: SystemTime) -> HeaderMap {
        let mut headers = self.headers.clone();
        let age = now.duration_since(self.fetched_at).unwrap_or_default().as_secs();
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(CACHE_STATUS.clone(), status.header());
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            max_age: Duration::from_secs(300),
            refresh: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(3600),
        }
    }

    #[test]
    fn freshness_moves_from_fresh_to_stale_to_expired() {
        let p = policy();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(p.freshness(t0, at(0)), Freshness::Fresh);
        assert_eq!(p.freshness(t0, at(65)), Freshness::Fresh);
        assert_eq!(p.freshness(t0, at(66)), Freshness::Stale);
        assert_eq!(p.freshness(t0, at(3600)), Freshness::Stale);
        assert_eq!(p.freshness(t0, at(3601)), Freshness::Expired);
        assert_eq!(p.freshness(at(10), t0), Freshness::Fresh, "clock went backwards");
    }

    /// The same state machine on a paused clock, as the refresher and the request path
    /// see it over time: `now` is the wall-clock time at the fetch plus elapsed time.
    #[tokio::test(start_paused = true)]
    async fn freshness_follows_the_clock() {
        let p = policy();
        let fetched_at = SystemTime::now();
        let start = tokio::time::Instant::now();
        let now = || fetched_at + start.elapsed();
        assert_eq!(p.freshness(fetched_at, now()), Freshness::Fresh);
        tokio::time::advance(p.fresh_for()).await;
        assert_eq!(p.freshness(fetched_at, now()), Freshness::Fresh);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.freshness(fetched_at, now()), Freshness::Stale);
        tokio::time::advance(p.stale_if_error - p.fresh_for() - Duration::from_secs(1)).await;
        assert_eq!(p.freshness(fetched_at, now()), Freshness::Stale);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(p.freshness(fetched_at, now()), Freshness::Expired);
    }

    #[test]
    fn headers_are_cacheable_and_etag_matches() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let doc = Document::new(DocKind::Jwks, Bytes::from_static(b"{\"keys\":[]}"), t0, None, &policy());
        let headers = doc.response_headers(CacheStatus::Hit, t0 + Duration::from_secs(42));
        assert_eq!(headers["age"], "42");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=300, stale-while-revalidate=60, stale-if-error=3600"
        );
        assert_eq!(headers["cache-status"], "jwks-edge; hit");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        for header in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}"), "*".into()] {
            assert!(doc.matches(&HeaderValue::from_str(&header).unwrap()), "{header}");
        }
        assert!(!doc.matches(&HeaderValue::from_static("\"other\"")));
        let other = Document::new(DocKind::Jwks, Bytes::from_static(b"{}"), t0, None, &policy());
        assert_ne!(other.etag, doc.etag);
    }
}
