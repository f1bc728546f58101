//! `[[publish]]` to Google Cloud Storage, against an in-process fake of the XML API that
//! object_store speaks (no emulator implements its writes): the requests' shape, order
//! and headers, and writes only when something changed. Not a substitute for GCS itself.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

const BUCKET: &str = "fake-gcs";

/// What the fake holds for one object: its body and the headers it was written with.
#[derive(Clone, Debug)]
struct Held {
    body: Bytes,
    headers: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Held>,
    /// Keys PUT, in order.
    writes: Vec<String>,
    /// Answer 403 to reads, as to credentials allowed to write only.
    deny_reads: bool,
}

/// An XML-API bucket on loopback: `HEAD|GET|PUT /{bucket}/{key}`; stops when dropped.
struct FakeGcs {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGcs {
    async fn start() -> FakeGcs {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeGcs { addr, state, task }
    }

    fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    fn object(&self, key: &str) -> Option<Held> {
        self.state.lock().unwrap().objects.get(key).cloned()
    }

    fn deny_reads(&self) {
        self.state.lock().unwrap().deny_reads = true;
    }

    fn delete(&self, key: &str) {
        self.state.lock().unwrap().objects.remove(key);
    }

    fn publish(&self) -> String {
        format!(
            "[[publish]]\nurl = \"gs://{BUCKET}/oidc\"\nendpoint = \"http://{}\"\n",
            self.addr
        )
    }
}

/// The headers an object keeps: its type, cache control and user metadata.
fn kept(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "content-type" || name == "cache-control" || name.starts_with("x-goog-meta-")
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect()
}

async fn answer(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    // object_store percent-encodes the bucket and the key, '-' and '/' included.
    let path = percent_decode(parts.uri.path());
    let Some(key) = path.strip_prefix(&format!("/{BUCKET}/")).map(str::to_owned) else {
        return Ok(status(StatusCode::NOT_FOUND));
    };
    let etag = |body: &Bytes| format!("\"{}\"", body.len());
    match parts.method {
        Method::PUT => {
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut state = state.lock().unwrap();
            state.writes.push(key.clone());
            let tag = etag(&body);
            state.objects.insert(
                key,
                Held {
                    body,
                    headers: kept(&parts.headers),
                },
            );
            Ok(Response::builder().header("etag", tag).body(Full::default()).unwrap())
        }
        Method::HEAD | Method::GET if state.lock().unwrap().deny_reads => Ok(status(StatusCode::FORBIDDEN)),
        Method::HEAD | Method::GET => {
            let Some(held) = state.lock().unwrap().objects.get(&key).cloned() else {
                return Ok(status(StatusCode::NOT_FOUND));
            };
            let mut response = Response::builder()
                .header("etag", etag(&held.body))
                .header("last-modified", "Wed, 02 Dec 2026 00:00:00 GMT")
                .header("content-length", held.body.len());
            for (name, value) in &held.headers {
                response = response.header(name, value);
            }
            let body = if parts.method == Method::GET {
                held.body
            } else {
                Bytes::new()
            };
            Ok(response.body(Full::new(body)).unwrap())
        }
        _ => Ok(status(StatusCode::NOT_IMPLEMENTED)),
    }
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::default()).unwrap()
}

/// A service account that asks for no OAuth token: the fake checks no credentials.
fn no_oauth() -> Vec<(String, String)> {
    let key = r#"{"private_key": "unused", "private_key_id": "unused", "client_email": "test@example.com", "disable_oauth": true}"#;
    vec![("GOOGLE_SERVICE_ACCOUNT_KEY".to_owned(), key.to_owned())]
}

#[tokio::test]
async fn publish_once_to_gcs_writes_the_key_set_first_with_the_headers_and_only_what_changed_or_unreadable() {
    let gcs = FakeGcs::start().await;
    let idps = Idps::start().await;
    let config = format!("{}{}", Issuer::gitlab(&idps.gitlab).name("gitlab"), gcs.publish());
    let (keys, discovery) = (format!("oidc/{GITLAB_KEYS}"), format!("oidc/{GITLAB_DISCOVERY}"));

    let run = publish_once(&config, &no_oauth()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(gcs.writes(), [keys.clone(), discovery.clone()], "key set first");
    for key in [&keys, &discovery] {
        let held = gcs.object(key).unwrap();
        assert_eq!(held.headers["content-type"], "application/json");
        assert!(
            held.headers["cache-control"].starts_with("public, max-age="),
            "{held:?}"
        );
        assert_eq!(held.headers["x-goog-meta-sha256"].len(), 64, "{held:?}");
    }
    let served: serde_json::Value = serde_json::from_slice(&gcs.object(&discovery).unwrap().body).unwrap();
    assert_eq!(served["jwks_uri"], "https://gitlab.example.com/oauth/discovery/keys");

    let run = publish_once(&config, &no_oauth()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(gcs.writes().len(), 2, "nothing changed, nothing written");

    idps.rotate_gitlab();
    gcs.delete(&discovery);
    let run = publish_once(&config, &no_oauth()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        gcs.writes()[2..],
        [keys.clone(), discovery.clone()],
        "the new key set, then the deleted document"
    );

    // Credentials that may write but not read: each run writes, as it cannot compare.
    gcs.deny_reads();
    let run = publish_once(&config, &no_oauth()).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(gcs.writes()[4..], [keys, discovery]);
}
