//! ACME (RFC 8555): the HTTPS certificates obtained and renewed from a CA such as Let's
//! Encrypt, with TLS-ALPN-01 (RFC 8737) or HTTP-01 answered by the proxy's own listeners.
//!
//! The protocol is `instant-acme`'s; this module decides when to order, answers the
//! challenges, keeps the account key and certificates in `cache_dir`, and installs each new
//! certificate into the `CertResolver`. A failed order never removes a certificate.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{info, warn};

use crate::cache::files::{self, write_atomically};
use crate::config::{Acme, AcmeChallenge};
use crate::model::timestamp;
use crate::tls;
use crate::tls::challenges::Challenges;
use crate::tls::resolver::{CertResolver, CertSet, ServerCert};

/// The problem type of a request signed by an account the CA does not know (RFC 8555 7.3.1).
const ACCOUNT_UNKNOWN: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Every request to the CA gets its response head within this (bodies are small; the
/// whole order is bounded by `ORDER_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole order (validation, finalisation, download) is bounded by this.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// First retry after a failed order; doubles up to `RETRY_MAX`. Five failed validations
/// per name per hour is Let's Encrypt's limit: 0, 2, 6, 14, 30 minutes stays within it.
const RETRY_MIN: Duration = Duration::from_secs(120);
const RETRY_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME exchange with the CA failed")]
    Protocol(#[from] instant_acme::Error),
    #[error("cannot use the ACME cache {path:?}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the ACME account in {path:?}")]
    Account {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot set up trust for the ACME directory")]
    Trust(#[source] tls::TlsError),
    #[error("the CA offers no {challenge} challenge for {domain}")]
    NoChallenge { challenge: &'static str, domain: String },
    #[error("the authorization for {domain} is {status:?}")]
    Authorization {
        domain: String,
        status: AuthorizationStatus,
    },
    #[error("the order became {status:?}{}", details.iter().map(|d| format!("; {d}")).collect::<String>())]
    Order { status: OrderStatus, details: Vec<String> },
    #[error("cannot make a key or certificate request")]
    Csr(#[source] rcgen::Error),
    #[error("the CA's certificate cannot be used")]
    Certificate(#[source] crate::tls::resolver::CertError),
    #[error("the order took longer than {0:?}")]
    Timeout(Duration),
}

/// One certificate's state, as `/readyz` shows it.
#[derive(Clone, Debug, Default)]
pub struct CertRecord {
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
    pub renew_at: Option<SystemTime>,
    pub last_attempt: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<SystemTime>,
}

impl CertRecord {
    /// `missing`/`expired` (HTTPS cannot serve these names), `valid`, `renewing` (due,
    /// no failure yet) or `renewal_failing` (due, and the CA refused or is unreachable).
    pub fn state(&self, now: SystemTime) -> &'static str {
        match (self.not_after, self.renew_at) {
            (None, _) => "missing",
            (Some(not_after), _) if not_after <= now => "expired",
            (_, Some(renew_at)) if renew_at <= now && self.consecutive_failures > 0 => "renewal_failing",
            (_, Some(renew_at)) if renew_at <= now => "renewing",
            _ => "valid",
        }
    }
}

/// The ACME state shared with the admin listener.
#[derive(Debug)]
pub struct AcmeStatus {
    pub directory: String,
    pub challenge: AcmeChallenge,
    records: Mutex<Vec<CertRecord>>,
}

impl AcmeStatus {
    pub fn records(&self) -> Vec<CertRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, index: usize, record: CertRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner())[index] = record;
    }
}

/// One certificate to keep: its names and where it is cached.
struct Plan {
    names: Vec<String>,
    file: PathBuf,
    current: Option<ServerCert>,
    /// Also the schedule: `next_attempt` is when to order next (renewal or retry).
    record: CertRecord,
}

/// Obtains and renews the certificates of `[server.tls.acme]`.
pub struct AcmeManager {
    config: Acme,
    /// `cache_dir` subdirectory for this directory URL: certificates from a staging CA
    /// are never served after switching to production.
    dir: PathBuf,
    plans: Vec<Plan>,
    resolver: Arc<CertResolver>,
    challenges: Arc<Challenges>,
    status: Arc<AcmeStatus>,
    issued: prometheus_client::metrics::counter::Counter,
    failed: prometheus_client::metrics::counter::Counter,
    account: Option<Account>,
    /// Trust for the CA's HTTPS, built at start so a bad `directory_ca` stops the start.
    trust: rustls::ClientConfig,
    /// Cached certificates of an earlier domain list, served (after the current ones)
    /// until every plan has its own certificate.
    leftovers: Vec<ServerCert>,
}

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache subdirectory for `directory`: its host (readable) and a hash (unique).
fn directory_dir(cache_dir: &Path, directory: &str) -> PathBuf {
    let host: String = directory
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    cache_dir.join(format!("{host}-{}", short_hash(directory)))
}

/// When a certificate is due for renewal: `renew_before` its expiry, or by default when
/// a third of its lifetime remains. Never before half its lifetime: a `renew_before`
/// longer than what the CA issues would otherwise order again and again.
pub fn renew_at(cert: &ServerCert, renew_before: Option<Duration>) -> SystemTime {
    let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
    let before = renew_before.unwrap_or(lifetime / 3).min(lifetime / 2);
    timestamp::sub(cert.not_after, before)
}

/// The cache file of the certificate for `names`, whatever their order in the config.
fn cache_file(dir: &Path, names: &[String]) -> PathBuf {
    let mut sorted = names.to_vec();
    sorted.sort();
    dir.join(format!("{}-{}.pem", sorted[0], short_hash(&sorted.join(","))))
}

/// What is remembered of failed orders across restarts (`<certificate>.retry.json`), so
/// that a restarting proxy keeps its backoff instead of spending the CA's limits.
#[derive(serde::Serialize, serde::Deserialize)]
struct RetryState {
    consecutive_failures: u32,
    last_attempt_unix: u64,
    next_attempt_unix: u64,
    last_error: String,
}

/// Delay before the next attempt after `failures` consecutive failed orders.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_MIN.saturating_mul(1 << doublings).min(RETRY_MAX)
}

impl AcmeManager {
    /// Loads cached certificates into `resolver` (no network); what is missing or due is
    /// ordered once `run` starts.
    pub fn new(
        config: Acme,
        resolver: Arc<CertResolver>,
        challenges: Arc<Challenges>,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<AcmeManager, AcmeError> {
        let trust = tls::client_config(config.directory_ca.as_deref(), None).map_err(AcmeError::Trust)?;
        let dir = directory_dir(&config.cache_dir, &config.directory);
        // Private (the account key lives here) and writable now, or the start fails: an
        // order whose certificate cannot be kept would be ordered again at every restart.
        let probe = dir.join(".write-test");
        files::create_private_dir(&config.cache_dir)
            .and_then(|()| files::create_private_dir(&dir))
            .map(|()| files::remove_stale_temporaries(&dir))
            .and_then(|_| write_atomically(&probe, b"", false))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| AcmeError::Cache {
                path: dir.clone(),
                source,
            })?;
        let groups: Vec<Vec<String>> = if config.one_per_domain {
            config.domains.iter().map(|d| vec![d.clone()]).collect()
        } else {
            vec![config.domains.clone()]
        };
        let now = SystemTime::now();
        let mut plans: Vec<Plan> = groups
            .into_iter()
            .map(|names| {
                let file = cache_file(&dir, &names);
                let current = load_pem(&file, now).filter(|cert| {
                    let mut have = cert.names.clone();
                    have.sort();
                    let mut want = names.clone();
                    want.sort();
                    have == want
                });
                let mut plan = Plan {
                    record: CertRecord {
                        names: names.clone(),
                        next_attempt: Some(now),
                        ..CertRecord::default()
                    },
                    names,
                    file,
                    current: None,
                };
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
        let leftovers = load_leftovers(&dir, &plans, &config.domains, now);
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
        let status = Arc::new(AcmeStatus {
            directory: config.directory.clone(),
            challenge: config.challenge,
            records: Mutex::new(plans.iter().map(|p| p.record.clone()).collect()),
        });
        let manager = AcmeManager {
            config,
            dir,
            plans,
            resolver,
            challenges,
            status,
            issued: metrics.acme_issued.clone(),
            failed: metrics.acme_failed.clone(),
            account: None,
            trust,
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
        let (names, file) = (self.plans[index].names.clone(), self.plans[index].file.clone());
        let started = SystemTime::now();
        info!(names = ?names, directory = %self.config.directory, "ordering a certificate");
        let result = tokio::time::timeout(ORDER_TIMEOUT, self.order(&names, &file)).await;
        self.challenges.clear();
        let result = result.unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT)));
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
                let _ = std::fs::remove_file(plan.retry_file());
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

    /// The account: from memory, from the cache, or registered now (and cached).
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let path = self.dir.join("account.json");
        let account = match files::read_regular(&path) {
            Ok(bytes) => {
                let credentials: AccountCredentials =
                    serde_json::from_slice(&bytes).map_err(|source| AcmeError::Account {
                        path: path.clone(),
                        source,
                    })?;
                Account::builder_with_http(self.http())
                    .from_credentials(credentials)
                    .await?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(self.http())
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.config.directory.clone(),
                        None,
                    )
                    .await?;
                let bytes = serde_json::to_vec_pretty(&credentials).expect("credentials always serialise");
                if let Err(err) = write_atomically(&path, &bytes, true) {
                    warn!(file = %path.display(), "cannot cache the ACME account; a restart will register another: {err}");
                }
                info!(account = account.id(), "ACME account registered");
                account
            }
            Err(source) => return Err(AcmeError::Cache { path, source }),
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// HTTPS to the CA: the public roots plus `directory_ca`, every request bounded.
    fn http(&self) -> Box<dyn HttpClient> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.trust.clone())
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Box::new(BoundedClient(client))
    }

    /// One order, start to finish: challenges published, answered, certificate cached in
    /// `file`.
    async fn order(&mut self, names: &[String], file: &Path) -> Result<ServerCert, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            // The CA no longer knows the cached account (a private CA's database was reset,
            // say): register a new one and order again, once.
            Err(instant_acme::Error::Api(problem)) if problem.r#type.as_deref() == Some(ACCOUNT_UNKNOWN) => {
                warn!("the CA does not know the cached ACME account ({problem}); registering a new one");
                self.account = None;
                let path = self.dir.join("account.json");
                std::fs::remove_file(&path).map_err(|source| AcmeError::Cache { path, source })?;
                self.account().await?.new_order(&NewOrder::new(&identifiers)).await?
            }
            result => result?,
        };
        let kind = match self.config.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            let domain = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Validated recently for this account; nothing to answer.
                AuthorizationStatus::Valid => continue,
                status => return Err(AcmeError::Authorization { domain, status }),
            }
            let mut challenge = authz.challenge(kind.clone()).ok_or(AcmeError::NoChallenge {
                challenge: self.config.challenge.as_str(),
                domain: domain.clone(),
            })?;
            let key_authorization = challenge.key_authorization();
            match self.config.challenge {
                AcmeChallenge::TlsAlpn01 => self
                    .challenges
                    .answer_tls_alpn(&domain, key_authorization.digest().as_ref())
                    .map_err(AcmeError::Csr)?,
                AcmeChallenge::Http01 => self
                    .challenges
                    .answer_http(&challenge.token, key_authorization.as_str()),
            }
            challenge.set_ready().await?;
        }
        // Every second for up to two minutes (the CA's Retry-After, when sent, wins):
        // doubling delays would leave long blind spots.
        let poll = RetryPolicy::new()
            .initial_delay(Duration::from_secs(1))
            .backoff(1.0)
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&poll).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order {
                status,
                details: order_problems(&mut order).await,
            });
        }
        let key = rcgen::KeyPair::generate().map_err(AcmeError::Csr)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(AcmeError::Csr)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(AcmeError::Csr)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&poll).await?;
        let file_text = format!("{chain}{}", key.serialize_pem());
        let certified = tls::certified_key_from_pem(&file_text, &file_text)
            .map_err(|e| AcmeError::Certificate(crate::tls::resolver::CertError::Load(e)))?;
        let cert = ServerCert::new(certified, file, SystemTime::now()).map_err(AcmeError::Certificate)?;
        if let Err(err) = write_atomically(file, file_text.as_bytes(), true) {
            // Served anyway: dropping an issued certificate would only order it again.
            warn!(file = %file.display(), "cannot cache the new certificate; a restart will order again: {err}");
        }
        Ok(cert)
    }
}

impl Plan {
    fn install(&mut self, cert: ServerCert, renew_before: Option<Duration>) {
        let due = renew_at(&cert, renew_before);
        let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
        if let Some(before) = renew_before.filter(|b| *b > lifetime / 2) {
            warn!(
                renew_before = %humantime::format_duration(before),
                lifetime = %humantime::format_duration(lifetime),
                "server.tls.acme.renew_before is more than half the certificate's lifetime; renewing at half"
            );
        }
        self.record.not_after = Some(cert.not_after);
        self.record.renew_at = Some(due);
        self.record.next_attempt = Some(due);
        self.current = Some(cert);
    }

    /// When to order next.
    fn next(&self) -> SystemTime {
        self.record.next_attempt.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn retry_file(&self) -> PathBuf {
        self.file.with_extension("retry.json")
    }

    /// Failed orders before a restart still count: the next attempt waits as it would have,
    /// but never longer than the longest backoff from `now` — whatever the file says, a
    /// certificate is ordered again within `RETRY_MAX`.
    fn restore_retry_state(&mut self, now: SystemTime) {
        let file = self.retry_file();
        let bytes = match files::read_regular(&file) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                warn!(file = %file.display(), "cannot read the failed-order record, ignoring it: {err}");
                return;
            }
        };
        let state = match serde_json::from_slice::<RetryState>(&bytes) {
            Ok(state) => state,
            Err(err) => {
                warn!(file = %file.display(), "the failed-order record is corrupt, ignoring it: {err}");
                return;
            }
        };
        let next = timestamp::from_unix_seconds(state.next_attempt_unix).min(timestamp::add(now, RETRY_MAX));
        self.record.consecutive_failures = state.consecutive_failures;
        self.record.last_attempt = Some(timestamp::from_unix_seconds(state.last_attempt_unix).min(now));
        self.record.last_error = Some(state.last_error);
        if next > self.next() {
            self.record.next_attempt = Some(next);
        }
    }

    fn save_retry_state(&self, attempt: SystemTime, reason: &str) {
        let state = RetryState {
            consecutive_failures: self.record.consecutive_failures,
            last_attempt_unix: timestamp::unix_seconds(attempt),
            next_attempt_unix: timestamp::unix_seconds(self.next()),
            last_error: reason.to_owned(),
        };
        let bytes = serde_json::to_vec(&state).expect("the retry state always serialises");
        if let Err(err) = write_atomically(&self.retry_file(), &bytes, false) {
            warn!(file = %self.retry_file().display(), "cannot record the failed order: {err}");
        }
    }
}

/// Unexpired certificates in `dir` that no plan owns and that cover some of `domains`.
fn load_leftovers(dir: &Path, plans: &[Plan], domains: &[String], now: SystemTime) -> Vec<ServerCert> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pem") && plans.iter().all(|plan| plan.file != *p))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|file| load_pem(file, now))
        .filter(|cert| domains.iter().any(|d| cert.covers(d)))
        .inspect(|cert| {
            info!(
                file = %cert.cert_file.display(),
                names = ?cert.names,
                "serving a certificate of the previous domain list until the new one is issued"
            )
        })
        .collect()
}

/// A cached certificate with its key, unexpired; anything else is ignored (and ordered
/// again), with a warning unless there is no file.
fn load_pem(file: &Path, now: SystemTime) -> Option<ServerCert> {
    let text = match files::read_regular_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            warn!(file = %file.display(), "cannot read the cached certificate, ordering a new one: {err}");
            return None;
        }
    };
    let loaded = tls::certified_key_from_pem(&text, &text)
        .map_err(crate::tls::resolver::CertError::Load)
        .and_then(|key| ServerCert::new(key, file, now));
    match loaded {
        Ok(cert) => Some(cert),
        Err(err) => {
            warn!(
                file = %file.display(),
                "cached certificate unusable, ordering a new one: {}",
                crate::error_chain(&err)
            );
            None
        }
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation handshake must see: the domain
/// as its only name and the key authorization's SHA-256 in the acmeIdentifier extension.
/// Why an order failed, from its authorizations' challenge errors.
async fn order_problems(order: &mut instant_acme::Order) -> Vec<String> {
    let mut details = Vec::new();
    if let Some(problem) = &order.state().error {
        details.push(problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let domain = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    details.push(format!("{domain}: {problem}"));
                }
            }
        }
    }
    details
}

/// The HTTP client `instant-acme` talks through, with each request bounded in time (the
/// crate's own client waits as long as the CA does).
struct BoundedClient(
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
);

impl HttpClient for BoundedClient {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(err)) => Err(instant_acme::Error::Other(Box::new(err))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("the CA did not answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_two_minutes_to_an_hour() {
        let minutes: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left_or_renew_before() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86400);
        let cert = crate::tls::resolver::test_cert(&["a.example"], start, start + 90 * day);
        assert_eq!(renew_at(&cert, None), start + 60 * day);
        assert_eq!(renew_at(&cert, Some(7 * day)), start + 83 * day);
        assert_eq!(
            renew_at(&cert, Some(100_000 * day)),
            start + 45 * day,
            "at most half the lifetime"
        );
    }

    #[test]
    fn cache_directories_differ_per_ca_and_stay_readable() {
        let cache = Path::new("/var/lib/jwks-edge/acme");
        let production = directory_dir(cache, crate::config::LETS_ENCRYPT);
        let staging = directory_dir(cache, crate::config::LETS_ENCRYPT_STAGING);
        assert_ne!(production, staging);
        let name = production.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("acme-v02.api.letsencrypt.org-"), "{name}");
        assert_eq!(directory_dir(cache, "https://127.0.0.1:14000/dir"), {
            let hash = short_hash("https://127.0.0.1:14000/dir");
            cache.join(format!("127.0.0.1-{hash}"))
        });
    }

    #[test]
    fn the_cache_file_does_not_depend_on_the_order_of_domains() {
        let dir = Path::new("/cache");
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let file = cache_file(dir, &names(&["b.example", "a.example"]));
        assert_eq!(file, cache_file(dir, &names(&["a.example", "b.example"])));
        assert!(file.file_name().unwrap().to_str().unwrap().starts_with("a.example-"));
        assert_ne!(file, cache_file(dir, &names(&["a.example"])));
    }

    #[test]
    fn record_states_say_what_an_operator_must_know() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let mut record = CertRecord::default();
        assert_eq!(record.state(now), "missing");
        record.not_after = Some(now + 10 * hour);
        record.renew_at = Some(now + hour);
        assert_eq!(record.state(now), "valid");
        record.renew_at = Some(now - hour);
        assert_eq!(record.state(now), "renewing");
        record.consecutive_failures = 1;
        assert_eq!(record.state(now), "renewal_failing");
        record.not_after = Some(now - hour);
        assert_eq!(record.state(now), "expired");
    }

    /// A plan with no certificate, due at `now`, cached in `dir`.
    fn plan(dir: &Path, now: SystemTime) -> Plan {
        let names = vec!["a.example".to_owned()];
        Plan {
            file: cache_file(dir, &names),
            record: CertRecord {
                names: names.clone(),
                next_attempt: Some(now),
                ..CertRecord::default()
            },
            names,
            current: None,
        }
    }

    #[test]
    fn a_retry_record_is_kept_but_never_waits_past_the_longest_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut plan = plan(dir.path(), now);
        plan.record.consecutive_failures = 3;
        plan.record.next_attempt = Some(now + Duration::from_secs(480));
        plan.save_retry_state(now, "refused");
        let mut restarted = self::plan(dir.path(), now + Duration::from_secs(60));
        restarted.restore_retry_state(now + Duration::from_secs(60));
        assert_eq!(restarted.record.next_attempt, Some(now + Duration::from_secs(480)));
        assert_eq!(restarted.record.last_attempt, Some(now));
        assert_eq!(restarted.record.consecutive_failures, 3);
        assert_eq!(restarted.record.last_error.as_deref(), Some("refused"));

        // The far future (a corrupt file, a clock that was years ahead) waits RETRY_MAX.
        let text = format!(
            r#"{{"consecutive_failures":1,"last_attempt_unix":{0},"next_attempt_unix":{0},"last_error":"x"}}"#,
            u64::MAX
        );
        std::fs::write(plan.retry_file(), text).unwrap();
        let mut restarted = self::plan(dir.path(), now);
        restarted.restore_retry_state(now);
        assert_eq!(restarted.record.next_attempt, Some(now + RETRY_MAX));
        assert_eq!(restarted.record.last_attempt, Some(now));
    }

    fn raw_seconds() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just(u64::MAX.to_string()),
            // Year 10000 and beyond.
            (crate::model::timestamp::MAX_UNIX_SECONDS..=u64::MAX).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[0-9]{20,60}",
            Just("null".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn any_retry_record_restores_without_panicking_and_within_bounds(
            next in raw_seconds(),
            last in raw_seconds(),
            failures in proptest::prelude::any::<u32>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut plan = plan(dir.path(), now);
            let text = format!(
                r#"{{"consecutive_failures":{failures},"last_attempt_unix":{last},"next_attempt_unix":{next},"last_error":"x"}}"#
            );
            std::fs::write(plan.retry_file(), text).unwrap();
            plan.restore_retry_state(now);
            let next_attempt = plan.record.next_attempt.unwrap();
            proptest::prop_assert!(now <= next_attempt && next_attempt <= now + RETRY_MAX);
            proptest::prop_assert!(plan.record.last_attempt.is_none_or(|t| t <= now));
            for t in [plan.record.next_attempt, plan.record.last_attempt].into_iter().flatten() {
                let text = crate::model::timestamp::rfc3339_seconds(t).to_string();
                proptest::prop_assert!(humantime::parse_rfc3339(&text).is_ok());
            }
            // The record written back from this state is readable again.
            plan.save_retry_state(now, "again");
            let mut again = self::plan(dir.path(), now);
            again.restore_retry_state(now);
            proptest::prop_assert_eq!(again.record.last_error.as_deref(), Some("again"));
        }
    }
}
