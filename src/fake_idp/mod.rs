//! `FakeIdp`: a small identity provider with switchable faults, for the demo, tests and benches.

mod state;
mod wire;

pub use state::{Fault, Resource};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::fake_idp::state::{lock, State};
use crate::fake_idp::wire::connection;

/// A running fake IdP (HTTP/1.1, plain or TLS). Stops when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeIdp {
    /// Serves plain HTTP on `listener` until dropped.
    pub fn serve(listener: TcpListener) -> std::io::Result<FakeIdp> {
        FakeIdp::start(listener, None)
    }

    /// Serves HTTPS on `listener` until dropped; `config` decides the certificate and
    /// whether clients must present one. Connection-level faults (`Reset`, `Truncate`)
    /// apply to plain HTTP only.
    pub fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<FakeIdp> {
        FakeIdp::start(listener, Some(TlsAcceptor::from(config)))
    }

    fn start(listener: TcpListener, tls: Option<TlsAcceptor>) -> std::io::Result<FakeIdp> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            resources: Mutex::new(HashMap::new()),
            fault: watch::Sender::new(Fault::None),
            hits: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            last_headers: Mutex::new(HeaderMap::new()),
            bearer: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(addr, listener, tls, state.clone()));
        Ok(FakeIdp { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `resource` at `path` (replacing what was there: key rotation).
    pub fn put(&self, path: &str, resource: Resource) {
        lock(&self.state.resources).insert(path.to_owned(), resource);
    }

    /// Requires `Authorization: Bearer <token>` from now on (`None`: no longer).
    pub fn require_bearer(&self, token: Option<&str>) {
        *lock(&self.state.bearer) = token.map(str::to_owned);
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.fault.send_replace(fault);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> u64 {
        lock(&self.state.hits).get(path).copied().unwrap_or(0)
    }

    /// Requests seen on any path.
    pub fn total_hits(&self) -> u64 {
        self.state.total.load(Ordering::Relaxed)
    }

    /// The most requests it was answering at the same time, since it started.
    pub fn max_concurrent_requests(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn last_request_headers(&self) -> HeaderMap {
        lock(&self.state.last_headers).clone()
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` again after `Fault::Refuse` ends (bounded retries).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return Some(listener);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn accept_loop(addr: SocketAddr, listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    let mut faults = state.fault.subscribe();
    let mut listener = Some(listener);
    // Connections live in the set, so aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let refusing = matches!(*faults.borrow_and_update(), Fault::Refuse);
        if refusing {
            listener = None;
        } else if listener.is_none() {
            listener = rebind(addr).await;
        }
        let Some(current) = &listener else {
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        };
        let stream = tokio::select! {
            accepted = current.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        connections.spawn(connection(stream, tls.clone(), state.clone()));
    }
}
