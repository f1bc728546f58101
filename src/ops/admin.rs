//! `Admin`: the operator's listener and the state it reads: `/healthz`, `/readyz`
//! (`readiness`) and the status page (`page_summary`, `page_issuer`, `page`), both from
//! `survey`; `/metrics` (`scrape`); `POST /admin/refresh` and `POST /admin/drop-retained`
//! (`actions`); routed by `routing`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::health::HealthBoard;
use crate::cache::key_board::KeyBoard;
use crate::cache::store::DocumentStore;
use crate::config::{Issuer, Readiness};
use crate::model::document::CachePolicy;
use crate::publish::status::PublishBoard;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::reach::ReachBoard;
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
    /// Each `[[publish]]` sink's state per issuer; `None` without `[[publish]]`. Never
    /// part of readiness: a failing sink must not take serving replicas out.
    pub publish: Option<Arc<PublishBoard>>,
    /// The relying parties' requests per document, counted by the public listeners.
    pub reach: Arc<ReachBoard>,
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
    pub(super) fn over(&self, all_servable: bool) -> bool {
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

impl Admin {
    pub(super) fn issuer_index(&self, name: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.name == name)
    }
}
