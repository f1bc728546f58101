//! How the refreshers are started, and the way the admin listener reaches them.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::upstream::refresh::issuer::IssuerRefresh;
use crate::upstream::rotation::DropRefused;

/// Asks a refresher to fetch at once; it answers with the outcome.
pub type RefreshRequest = oneshot::Sender<Result<(), String>>;

/// Asks a key set refresher to stop publishing its retained keys now; it answers, once
/// the published copy (and its snapshot) no longer holds them, with their `kid`s.
pub type DropRequest = oneshot::Sender<Result<Vec<Option<String>>, DropRefused>>;

/// The way to one issuer's refreshers, for `POST /admin/refresh` and
/// `POST /admin/drop-retained`.
#[derive(Clone, Debug)]
pub struct RefreshControl {
    pub name: String,
    pub discovery: mpsc::Sender<RefreshRequest>,
    pub jwks: mpsc::Sender<RefreshRequest>,
    pub drop_retained: mpsc::Sender<DropRequest>,
}

/// Starts both refreshers of every issuer. Dropping the set stops them; a fetch cut short
/// this way loses nothing, since only complete, validated documents are ever stored, and
/// snapshots are replaced by rename.
pub fn spawn_all(issuers: Vec<IssuerRefresh>) -> (JoinSet<()>, Vec<RefreshControl>) {
    let mut set = JoinSet::new();
    let mut controls = Vec::with_capacity(issuers.len());
    if let Some(report) = issuers.first().map(|i| i.startup.clone()) {
        // Ends the start-up round even if some document never reports its first fetch.
        set.spawn(async move {
            tokio::time::sleep(report.deadline()).await;
            report.finish();
        });
    }
    for mut issuer in issuers {
        let (discovery, discovery_requests) = mpsc::channel(4);
        let (jwks, jwks_requests) = mpsc::channel(4);
        let (drop_retained, drop_requests) = mpsc::channel(4);
        controls.push(RefreshControl {
            name: issuer.issuer.name.clone(),
            discovery,
            jwks,
            drop_retained,
        });
        // Both refreshers share one copy: each sleeping task holds a pointer, not the
        // 900 bytes of clients, boards and policy.
        let restored_keys = issuer.restored_keys.take();
        let issuer = std::sync::Arc::new(issuer);
        set.spawn(issuer.clone().refresh_discovery(discovery_requests));
        set.spawn(issuer.refresh_jwks(restored_keys, jwks_requests, drop_requests));
    }
    (set, controls)
}
