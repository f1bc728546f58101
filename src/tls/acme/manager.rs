//! `AcmeManager`: the renewal loop — orders each certificate when it is missing or due,
//! installs it into the `CertResolver`, and publishes every change to `AcmeStatus`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use crate::config::Acme;
use crate::model::timestamp;
use crate::telemetry::metrics::Metrics;
use crate::tls::acme::cache_dir;
use crate::tls::acme::error::AcmeError;
use crate::tls::acme::order::Ca;
use crate::tls::acme::plan::{retry_delay, Plan, RETRY_MAX};
use crate::tls::acme::status::AcmeStatus;
use crate::tls::challenges::Challenges;
use crate::tls::resolver::{CertResolver, CertSet, ServerCert};

/// Obtains and renews the certificates of `[server.tls.acme]`.
pub struct AcmeManager {
    config: Acme,
    plans: Vec<Plan>,
    resolver: Arc<CertResolver>,
    ca: Ca,
    status: Arc<AcmeStatus>,
    issued: prometheus_client::metrics::counter::Counter,
    failed: prometheus_client::metrics::counter::Counter,
    /// Cached certificates of an earlier domain list, served (after the current ones)
    /// until every plan has its own certificate.
    leftovers: Vec<ServerCert>,
}

impl AcmeManager {
    /// Loads cached certificates into `resolver` (no network); what is missing or due is
    /// ordered once `run` starts.
    pub fn new(
        config: Acme,
        resolver: Arc<CertResolver>,
        challenges: Arc<Challenges>,
        metrics: &Metrics,
    ) -> Result<AcmeManager, AcmeError> {
        // A `cache_dir` subdirectory per directory URL: certificates from a staging CA are
        // never served after switching to production.
        let dir = cache_dir::directory_dir(&config.cache_dir, &config.directory);
        let ca = Ca::new(&config, dir.clone(), challenges)?;
        // Writable now, or the start fails: an order whose certificate cannot be kept
        // would be ordered again at every restart.
        cache_dir::prepare(&config.cache_dir, &dir)?;
        let groups: Vec<Vec<String>> = if config.one_per_domain {
            config.domains.iter().map(|d| vec![d.clone()]).collect()
        } else {
            vec![config.domains.clone()]
        };
        let now = SystemTime::now();
        let mut plans: Vec<Plan> = groups
            .into_iter()
            .map(|names| {
                let mut plan = Plan::new(names, &dir, now);
                let current = cache_dir::load_certificate(&plan.file, now).filter(|cert| {
                    let mut have = cert.names.clone();
                    have.sort();
                    let mut want = plan.names.clone();
                    want.sort();
                    have == want
                });
                if let Some(cert) = current {
                    info!(
                        file = %plan.file.display(),
                        names = ?cert.names,
                        not_after = %timestamp::rfc3339_seconds(cert.not_after),
                        "cached certificate loaded"
                    );
                    plan.install(cert, config.renew_before);
                }
                plan.restore_retry_state(now);
                plan
            })
            .collect();
        let owned: Vec<&Path> = plans.iter().map(|p| p.file.as_path()).collect();
        let leftovers = cache_dir::load_leftovers(&dir, &owned, &config.domains, now);
        for plan in plans.iter_mut().filter(|p| p.current.is_none()) {
            // The domain list changed: names still covered by earlier certificates keep
            // them until the new order succeeds (due at once).
            let covering: Vec<&ServerCert> = plan
                .names
                .iter()
                .filter_map(|name| leftovers.iter().find(|c| c.covers(name)))
                .collect();
            if covering.len() == plan.names.len() {
                plan.record.not_after = covering.iter().map(|c| c.not_after).min();
                plan.record.renew_at = Some(now);
            }
        }
        let status = Arc::new(AcmeStatus::new(
            config.directory.clone(),
            config.challenge,
            plans.iter().map(|p| p.record.clone()).collect(),
        ));
        let manager = AcmeManager {
            config,
            plans,
            resolver,
            ca,
            status,
            issued: metrics.acme_issued.clone(),
            failed: metrics.acme_failed.clone(),
            leftovers,
        };
        manager.publish();
        Ok(manager)
    }

    pub fn status(&self) -> Arc<AcmeStatus> {
        self.status.clone()
    }

    /// Installs the current certificates (in domain order; the first is the default).
    fn publish(&self) {
        let complete = self.plans.iter().all(|p| p.current.is_some());
        let leftovers = self.leftovers.iter().filter(|_| !complete);
        let certs = self
            .plans
            .iter()
            .filter_map(|p| p.current.as_ref())
            .chain(leftovers)
            .cloned()
            .collect();
        self.resolver.replace(CertSet { certs });
        for (index, plan) in self.plans.iter().enumerate() {
            self.status.set(index, plan.record.clone());
        }
    }

    /// Orders what is missing or due, forever; cancelled with the task.
    pub async fn run(mut self) {
        loop {
            let now = SystemTime::now();
            for index in 0..self.plans.len() {
                if self.plans[index].next() <= now {
                    self.attempt(index).await;
                }
            }
            let next = self
                .plans
                .iter()
                .map(Plan::next)
                .min()
                .unwrap_or(timestamp::add(now, RETRY_MAX));
            // Wall-clock deadlines (certificates expire in real time): look again at least
            // hourly in case the clock jumped.
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(RETRY_MAX);
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&mut self, index: usize) {
        let (names, file): (Vec<String>, PathBuf) = (self.plans[index].names.clone(), self.plans[index].file.clone());
        let started = SystemTime::now();
        info!(names = ?names, directory = %self.config.directory, "ordering a certificate");
        let result = self.ca.order(&names, &file).await;
        let renew_before = self.config.renew_before;
        let plan = &mut self.plans[index];
        plan.record.last_attempt = Some(started);
        match result {
            Ok(cert) => {
                self.issued.inc();
                plan.record.last_error = None;
                plan.record.consecutive_failures = 0;
                info!(
                    names = ?cert.names,
                    not_after = %timestamp::rfc3339_seconds(cert.not_after),
                    file = %cert.cert_file.display(),
                    "certificate obtained"
                );
                plan.install(cert, renew_before);
                cache_dir::remove_retry_state(&plan.retry_file());
            }
            Err(err) => {
                self.failed.inc();
                let reason = crate::error_chain(&err);
                plan.record.consecutive_failures += 1;
                plan.record.last_error = Some(reason.clone());
                let delay = retry_delay(plan.record.consecutive_failures);
                plan.record.next_attempt = Some(timestamp::add(SystemTime::now(), delay));
                plan.save_retry_state(started, &reason);
                let consequence = match plan.current {
                    Some(_) => "the current certificate stays",
                    None => "HTTPS has no certificate for these names yet",
                };
                warn!(
                    names = ?names,
                    retry_in = %humantime::format_duration(delay),
                    "certificate order failed, {consequence}: {reason}"
                );
            }
        }
        self.publish();
    }
}
