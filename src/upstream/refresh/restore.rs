//! Restore from snapshot: the last good copies an issuer's refreshers go on from after a
//! restart, checked again before they are served.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tracing::{info, warn};

use crate::cache::snapshot::Snapshot;
use crate::error_chain;
use crate::model::document::{CachePolicy, DocKind, Document, Freshness};
use crate::upstream::checks::ValidationError;
use crate::upstream::keyset::KeySetRules;
use crate::upstream::refresh::discovery::discovery_document;
use crate::upstream::refresh::issuer::IssuerRefresh;

/// The public key set document for a key set read back from a snapshot: checked and
/// shaped by `keys` again, since the file or the rules may have changed since.
fn jwks_document(
    body: Bytes,
    fetched_at: SystemTime,
    policy: &CachePolicy,
    keys: &KeySetRules,
    discovery: Option<&[u8]>,
) -> Result<Document, ValidationError> {
    let body = keys.build(body, discovery)?;
    Ok(Document::new(DocKind::Jwks, body, fetched_at, None, policy))
}

impl IssuerRefresh {
    /// Puts the snapshots of this issuer's documents in the store; called before any
    /// listener accepts. Unusable snapshots are logged and skipped, never fatal. The key
    /// set is rebuilt from its saved history first: withdrawn keys and retained keys
    /// whose time is up are not served even once.
    pub fn restore(&mut self) {
        let Some(snapshots) = self.snapshots.clone() else {
            return;
        };
        for kind in [DocKind::Discovery, DocKind::Jwks] {
            let snapshot = match snapshots.load(&self.issuer, kind) {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => continue,
                Err(err) => {
                    warn!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot ignored: {}", error_chain(&err));
                    continue;
                }
            };
            if self.policy.freshness(snapshot.fetched_at, SystemTime::now()) == Freshness::Expired {
                info!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot older than stale_if_error, not served");
                continue;
            }
            let stored = match kind {
                DocKind::Discovery => {
                    discovery_document(&self.issuer, &snapshot.body, snapshot.fetched_at, &self.policy)
                        .map_err(|e| e.to_string())
                        .and_then(|(doc, upstream_issuer)| {
                            self.note_issuer(&upstream_issuer);
                            self.router.claim(self.index, doc.jwks.as_ref())?;
                            self.store.put(self.id(DocKind::Discovery), Arc::new(doc));
                            Ok(())
                        })
                }
                DocKind::Jwks => self.restore_jwks(&snapshot),
            };
            match stored {
                Ok(()) => {
                    info!(
                        issuer = %self.issuer.name,
                        document = kind.as_str(),
                        fetched_at = %crate::model::timestamp::rfc3339_seconds(snapshot.fetched_at),
                        "serving snapshot until the upstream answers"
                    );
                }
                Err(err) => {
                    warn!(issuer = %self.issuer.name, document = kind.as_str(), "snapshot ignored: {err}");
                }
            }
        }
    }

    /// Restores the key history saved with the key set, and serves what it leaves.
    fn restore_jwks(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let mut retention = self.new_retention();
        let events = retention.restore(
            &snapshot.body,
            snapshot.fetched_at,
            snapshot.keys.as_deref(),
            SystemTime::now(),
        );
        let Some(body) = retention.body() else {
            self.note_keys(&retention, &events);
            self.restored_keys = Some(retention);
            return Err("every key in it is withdrawn or has expired: nothing to publish".to_owned());
        };
        let discovery = self.store.get(self.id(DocKind::Discovery));
        let discovery = discovery.as_ref().map(|d| &d.body[..]);
        let doc = jwks_document(body, snapshot.fetched_at, &self.policy, &self.key_rules, discovery)
            .map_err(|e| e.to_string())?;
        self.store.put(self.id(DocKind::Jwks), Arc::new(doc));
        self.note_keys(&retention, &events);
        self.restored_keys = Some(retention);
        Ok(())
    }
}
