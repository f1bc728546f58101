//! What the fake IdP serves and how it misbehaves: its documents, the switchable fault,
//! and the counters and last headers tests read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;

/// One document the IdP serves, with the headers it sends along.
#[derive(Clone, Debug)]
pub struct Resource {
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Resource {
    /// A JSON body with the headers self-hosted IdPs are known to send and relying parties
    /// suffer from: `no-cache`, `Pragma`, a past `Expires` and a session cookie.
    pub fn json_with_idp_headers(body: impl Into<Bytes>) -> Resource {
        Resource {
            body: body.into(),
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, no-store, must-revalidate, private"),
                ),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
                (
                    header::EXPIRES,
                    HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
                ),
                (
                    header::SET_COOKIE,
                    HeaderValue::from_static("_gitlab_session=4f1c2a; path=/; HttpOnly; SameSite=Lax"),
                ),
            ],
        }
    }
}

/// What the IdP does instead of answering normally; applies to every new connection
/// (the IdP closes each connection after one answer, so a fault takes effect at once).
#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// Close the listening socket: connections are refused.
    Refuse,
    /// Read the request, then reset the connection (RST) without answering.
    Reset,
    /// Accept the request and never answer.
    Hang,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Send the head at once, then the body one byte per interval.
    Drip(Duration),
    /// Answer with this status and a short text body.
    Status(u16),
    /// Answer 200 with an HTML login page (a proxy or SSO portal in the way).
    Html,
    /// Announce the document's full length, send half of it, close.
    Truncate,
    /// Answer 200 with this body instead of the document.
    Body(Bytes),
    /// Answer 200 with this many bytes, chunked (no Content-Length to refuse early).
    Oversize(usize),
    /// Answer 302 with this `Location`.
    Redirect(String),
}

pub(super) struct State {
    pub(super) resources: Mutex<HashMap<String, Resource>>,
    pub(super) fault: watch::Sender<Fault>,
    pub(super) hits: Mutex<HashMap<String, u64>>,
    pub(super) total: AtomicU64,
    /// Requests being answered now, and the most there ever were at once: the bound a
    /// client puts on its concurrency, as the IdP sees it.
    pub(super) in_flight: AtomicU64,
    pub(super) max_in_flight: AtomicU64,
    /// Headers of the most recent request, to check what the proxy forwards.
    pub(super) last_headers: Mutex<HeaderMap>,
    /// When set, requests without `Authorization: Bearer <token>` get a 401.
    pub(super) bearer: Mutex<Option<String>>,
}

impl State {
    pub(super) fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }

    pub(super) fn count(&self, path: &str) {
        *lock(&self.hits).entry(path.to_owned()).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one request as in flight from its head to the end of its answer's production
/// (a delay included); dropped when the answer is handed to the connection.
pub(super) struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    pub(super) fn enter(state: &'a State) -> InFlight<'a> {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
