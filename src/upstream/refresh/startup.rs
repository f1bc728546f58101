//! `StartupReport`: the first fetch of every document, logged as one line per kind of
//! failure with a count and a few names, instead of one WARN line per document.
//!
//! A fleet of 1,000 issuers behind one broken upstream used to log 1,000 identical WARN
//! lines at start. Failures after the first round are logged per document, as before.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::error_chain;
use crate::model::document::DocKind;
use crate::upstream::fetch::FetchError;

/// What an issuer mismatch means and how to fix it, for its ERROR lines.
pub(super) const ISSUER_MISMATCH: &str = "relying parties will accept the document and refuse every token, whose \
     `iss` is the upstream's value. jwks-edge never rewrites `issuer`; make the IdP name itself by the public URL \
     (GitLab: external_url or ci_id_tokens_issuer_url; Keycloak: hostname / frontend URL; Kubernetes: \
     kube-apiserver --service-account-issuer), or set public_url to the tokens' `iss`";

/// Names shown per kind of failure; the count says how many there are in all.
const SHOWN: usize = 5;

/// Shared by every refresher (each reports its document's first fetch once) and by the
/// deadline task in `spawn_all`, which ends the round if some document never reports.
#[derive(Debug)]
pub struct StartupReport {
    documents: usize,
    /// Every first attempt ends within this (queue wait ≤ `refresh`, then
    /// `fetch_timeout`, twice: the key set waits for its discovery document).
    deadline: Duration,
    round: Mutex<Round>,
}

#[derive(Debug, Default)]
struct Round {
    /// Reported documents, (issuer index, is key set): each counts once.
    reported: HashSet<(usize, bool)>,
    /// Set when the summary is written; later failures are logged one by one.
    closed: bool,
    ok: usize,
    /// Key sets with no URL to fetch yet, their discovery document having failed.
    blocked: usize,
    /// By outcome (`reason`): the names of the failed documents, and one error in full.
    failed: BTreeMap<&'static str, Failed>,
    /// Issuers whose upstream names itself otherwise.
    mismatched: Vec<Mismatch>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Mismatch {
    index: usize,
    name: String,
    upstream_issuer: String,
    public_url: String,
}

#[derive(Debug)]
struct Failed {
    /// (issuer index, name): shown in config order, whichever fetch ended first.
    names: Vec<(usize, String)>,
    example: String,
}

impl StartupReport {
    pub fn new(documents: usize, deadline: Duration) -> StartupReport {
        StartupReport {
            documents,
            deadline,
            round: Mutex::new(Round::default()),
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Records the end of a document's first fetch. `blocks_key_set`: a failed discovery
    /// fetch that leaves the issuer's key set without a URL to fetch, so that key set
    /// has no first attempt in this round. Returns true when the failure is the report's
    /// to log, so the caller logs nothing.
    pub fn first_attempt(
        &self,
        index: usize,
        name: &str,
        kind: DocKind,
        failure: Option<&FetchError>,
        blocks_key_set: bool,
    ) -> bool {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if round.closed || !round.reported.insert((index, kind == DocKind::Jwks)) {
            return false;
        }
        if blocks_key_set && round.reported.insert((index, true)) {
            round.blocked += 1;
        }
        match failure {
            None => round.ok += 1,
            Some(err) => {
                let failed = round.failed.entry(err.outcome().as_str()).or_insert_with(|| Failed {
                    names: Vec::new(),
                    example: format!("{name} {}: {}", kind.as_str(), error_chain(err)),
                });
                failed.names.push((index, format!("{name} {}", kind.as_str())));
            }
        }
        if round.reported.len() >= self.documents {
            self.close(&mut round);
        }
        failure.is_some()
    }

    /// Records an issuer whose upstream's `issuer` is not its public URL, seen while the
    /// round is open. Returns true when the report is to log it.
    pub fn issuer_mismatch(&self, index: usize, name: &str, upstream_issuer: &str, public_url: &str) -> bool {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if round.closed {
            return false;
        }
        round.mismatched.push(Mismatch {
            index,
            name: name.to_owned(),
            upstream_issuer: upstream_issuer.to_owned(),
            public_url: public_url.to_owned(),
        });
        true
    }

    /// Writes the summary now if it is not written yet (the deadline passed).
    pub fn finish(&self) {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if !round.closed {
            self.close(&mut round);
        }
    }

    fn close(&self, round: &mut Round) {
        round.closed = true;
        let failed: usize = round.failed.values().map(|f| f.names.len()).sum();
        let unreported = self.documents.saturating_sub(round.reported.len());
        info!(
            documents = self.documents,
            ok = round.ok,
            failed,
            blocked = round.blocked,
            unreported,
            "first fetch of every document ended: {} ok, {failed} failed, {} key sets wait for their discovery \
             document, {unreported} not attempted within {:?}",
            round.ok,
            round.blocked,
            self.deadline
        );
        round.mismatched.sort();
        if let [one] = &round.mismatched[..] {
            // One issuer: the line it would have had on its own, with its fields.
            error!(
                issuer = %one.name,
                upstream_issuer = %one.upstream_issuer,
                public_url = %one.public_url,
                "the upstream's `issuer` is {:?}, not public_url {:?}: {ISSUER_MISMATCH}",
                one.upstream_issuer,
                one.public_url
            );
        } else if !round.mismatched.is_empty() {
            let count = round.mismatched.len();
            let more = count.saturating_sub(SHOWN);
            let shown: Vec<String> = round
                .mismatched
                .iter()
                .take(SHOWN)
                .map(|m| format!("{} (upstream says {:?})", m.name, m.upstream_issuer))
                .collect();
            error!(
                count,
                "{count} issuer(s) whose upstream's `issuer` is not their public_url: {}{}: {ISSUER_MISMATCH}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        for (reason, kind) in &mut round.failed {
            kind.names.sort();
            let more = kind.names.len().saturating_sub(SHOWN);
            let names: Vec<&str> = kind.names.iter().take(SHOWN).map(|(_, n)| n.as_str()).collect();
            let names = names.join(", ");
            warn!(
                reason,
                count = kind.names.len(),
                example = %kind.example,
                "{} of {} documents failed their first fetch ({reason}): {names}{}; each keeps its last good \
                 copy, if any, and is retried with backoff; /readyz?detail=full has each one's error",
                kind.names.len(),
                self.documents,
                if more > 0 { format!(" and {more} more") } else { String::new() }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn each_document_counts_once_and_a_blocked_key_set_counts_as_reported() {
        let report = StartupReport::new(4, D::from_secs(1));
        let err = FetchError::Timeout(D::from_secs(1));
        assert!(report.first_attempt(0, "a", DocKind::Discovery, Some(&err), true));
        // A later success of the blocked key set is not a first attempt any more.
        assert!(!report.first_attempt(0, "a", DocKind::Jwks, Some(&err), false));
        assert!(!report.first_attempt(1, "b", DocKind::Discovery, None, false));
        assert!(!report.round.lock().unwrap().closed);
        assert!(report.first_attempt(1, "b", DocKind::Jwks, Some(&err), false));
        let round = report.round.lock().unwrap();
        assert!(round.closed);
        assert_eq!(
            round.failed["timeout"].names,
            [(0, "a discovery".to_owned()), (1, "b jwks".to_owned())]
        );
        assert_eq!((round.ok, round.blocked), (1, 1));
        drop(round);
        // Once closed, failures are the caller's to log.
        assert!(!report.first_attempt(2, "c", DocKind::Discovery, Some(&err), false));
    }
}
