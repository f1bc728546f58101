//! The admin actions, `POST /admin/refresh` and `POST /admin/drop-retained`: each asks
//! the selected issuers' refreshers, bounded, and reports every outcome.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::edge::reject::Reject;
use crate::ops::admin::Admin;
use crate::upstream::refresh::RefreshControl;

/// What an action did, issuer by issuer, and the status that sums it up.
pub(super) struct Report {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// A refresher had requests queued: the action is worth retrying shortly.
    pub busy: bool,
}

impl Admin {
    /// `POST /admin/refresh[?issuer=NAME]`: fetches now and reports each outcome. A
    /// refresher that already has requests queued (it may be waiting for the first
    /// discovery document) makes the answer 503: this never waits for queue room.
    pub(super) async fn refresh(&self, issuer: Option<&str>) -> Result<Report, Reject> {
        let selected = self.selected(issuer).ok_or(Reject::UnknownIssuer)?;
        // Each fetch is bounded by fetch_timeout; allow for both documents in turn.
        let wait = self.policy.fetch_timeout * 2 + Duration::from_secs(1);
        let mut tasks = tokio::task::JoinSet::new();
        for (order, control) in selected.into_iter().cloned().enumerate() {
            tasks.spawn(async move {
                let discovery = ask(&control.discovery, wait).await;
                let jwks = ask(&control.jwks, wait).await;
                (order, control.name, discovery, jwks)
            });
        }
        let mut results = tasks.join_all().await;
        results.sort_by_key(|r| r.0);
        let (mut all_ok, mut busy) = (true, false);
        let issuers: Vec<_> = results
            .into_iter()
            .map(|(_, name, discovery, jwks)| {
                all_ok &= discovery.is_ok() && jwks.is_ok();
                let mut report = |r: Result<(), Asked<String>>| match r {
                    Ok(()) => json!({"ok": true}),
                    Err(Asked::Busy) => {
                        busy = true;
                        json!({"ok": false, "error": "busy: a refresh is already queued"})
                    }
                    Err(Asked::Refused(error) | Asked::Failed(error)) => json!({"ok": false, "error": error}),
                };
                json!({"name": name, "discovery": report(discovery), "jwks": report(jwks)})
            })
            .collect();
        let status = match (all_ok, busy) {
            (true, _) => StatusCode::OK,
            (false, true) => StatusCode::SERVICE_UNAVAILABLE,
            (false, false) => StatusCode::BAD_GATEWAY,
        };
        Ok(Report {
            status,
            body: json!({"ok": all_ok, "issuers": issuers}),
            busy,
        })
    }

    /// `POST /admin/drop-retained[?issuer=NAME]`: stops publishing retained keys now and
    /// answers once the published copies no longer hold them, with the `kid`s dropped.
    /// 409 when dropping would leave an issuer no key to publish (nothing is dropped
    /// there); 503 with `Retry-After` when a refresher has requests queued.
    pub(super) async fn drop_retained(&self, issuer: Option<&str>) -> Result<Report, Reject> {
        let selected = self.selected(issuer).ok_or(Reject::UnknownIssuer)?;
        // The key set refresher may be in the middle of one fetch.
        let wait = self.policy.fetch_timeout + Duration::from_secs(2);
        let mut tasks = tokio::task::JoinSet::new();
        for (order, control) in selected.into_iter().cloned().enumerate() {
            tasks.spawn(async move { (order, control.name, ask(&control.drop_retained, wait).await) });
        }
        let mut results = tasks.join_all().await;
        results.sort_by_key(|r| r.0);
        let (mut busy, mut refused, mut failed) = (false, false, false);
        let issuers: Vec<_> = results
            .into_iter()
            .map(|(_, name, outcome)| match outcome {
                Ok(dropped) => json!({"name": name, "ok": true, "dropped": dropped}),
                Err(Asked::Busy) => {
                    busy = true;
                    json!({"name": name, "ok": false, "error": "busy: requests are already queued"})
                }
                Err(Asked::Refused(reason)) => {
                    refused = true;
                    json!({"name": name, "ok": false, "error": reason.to_string()})
                }
                Err(Asked::Failed(error)) => {
                    failed = true;
                    json!({"name": name, "ok": false, "error": error})
                }
            })
            .collect();
        let status = if failed {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if busy {
            StatusCode::SERVICE_UNAVAILABLE
        } else if refused {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        };
        let ok = status == StatusCode::OK;
        Ok(Report {
            status,
            body: json!({"ok": ok, "issuers": issuers}),
            busy,
        })
    }

    /// The refreshers an admin action is for: every issuer's, or `?issuer=NAME`'s;
    /// `None` when no issuer has that name.
    fn selected(&self, wanted: Option<&str>) -> Option<Vec<&RefreshControl>> {
        let selected: Vec<&RefreshControl> = self
            .refresh
            .iter()
            .filter(|c| wanted.is_none_or(|name| c.name == name))
            .collect();
        (!selected.is_empty()).then_some(selected)
    }
}

/// Why a refresher gave no success: its queue was full, it refused (`E`, its own
/// reason), or it did not answer.
enum Asked<E> {
    /// Its queue is full: a request is already pending.
    Busy,
    Refused(E),
    Failed(String),
}

/// Sends a request to a refresher and waits (bounded) for its answer; never waits for
/// room in its queue.
async fn ask<T, E>(
    refresher: &tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<T, E>>>,
    wait: Duration,
) -> Result<T, Asked<E>> {
    use tokio::sync::mpsc::error::TrySendError;
    let stopped = || Asked::Failed("the refresher has stopped".to_owned());
    let (reply, outcome) = tokio::sync::oneshot::channel();
    match refresher.try_send(reply) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(Asked::Busy),
        Err(TrySendError::Closed(_)) => return Err(stopped()),
    }
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(outcome)) => outcome.map_err(Asked::Refused),
        Ok(Err(_)) => Err(stopped()),
        Err(_) => Err(Asked::Failed(format!("no outcome within {wait:?}"))),
    }
}
