//! `Ca`: one account at the CA, and certificate orders through `instant-acme`, start to
//! finish: challenges answered, key and CSR made, certificate downloaded and cached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{info, warn};

use crate::config::{Acme, AcmeChallenge};
use crate::tls::acme::cache_dir;
use crate::tls::acme::error::AcmeError;
use crate::tls::acme::https;
use crate::tls::challenges::Challenges;
use crate::tls::client::client_config;
use crate::tls::material::certified_key_from_pem;
use crate::tls::resolver::{CertError, ServerCert};

/// The problem type of a request signed by an account the CA does not know (RFC 8555 7.3.1).
const ACCOUNT_UNKNOWN: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// A whole order (validation, finalisation, download) is bounded by this.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The CA of `[server.tls.acme]`, as one account talks to it.
pub(super) struct Ca {
    directory: String,
    contact: Vec<String>,
    challenge: AcmeChallenge,
    /// The `cache_dir` subdirectory for this CA: the account is cached there.
    dir: PathBuf,
    /// Trust for the CA's HTTPS, built at start so a bad `directory_ca` stops the start.
    trust: rustls::ClientConfig,
    /// Where the answers to this CA's challenges are published for the listeners.
    challenges: Arc<Challenges>,
    account: Option<Account>,
}

impl Ca {
    /// Sets up trust (no network); the account is read or registered at the first order.
    pub(super) fn new(config: &Acme, dir: PathBuf, challenges: Arc<Challenges>) -> Result<Ca, AcmeError> {
        let trust = client_config(config.directory_ca.as_deref(), None).map_err(AcmeError::Trust)?;
        Ok(Ca {
            directory: config.directory.clone(),
            contact: config.contact.clone(),
            challenge: config.challenge,
            dir,
            trust,
            challenges,
            account: None,
        })
    }

    /// One order for `names`, within `ORDER_TIMEOUT`, its certificate cached in `file`.
    /// No challenge answer outlives it.
    pub(super) async fn order(&mut self, names: &[String], file: &Path) -> Result<ServerCert, AcmeError> {
        let result = tokio::time::timeout(ORDER_TIMEOUT, self.exchange(names, file)).await;
        self.challenges.clear();
        result.unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT)))
    }

    /// The account: from memory, from the cache, or registered now (and cached).
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let account = match cache_dir::read_account(&self.dir)? {
            Some(credentials) => {
                Account::builder_with_http(https::client(&self.trust))
                    .from_credentials(credentials)
                    .await?
            }
            None => {
                let contact: Vec<&str> = self.contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(https::client(&self.trust))
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory.clone(),
                        None,
                    )
                    .await?;
                cache_dir::save_account(&self.dir, &credentials);
                info!(account = account.id(), "ACME account registered");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order, start to finish: challenges published, answered, certificate cached in
    /// `file`.
    async fn exchange(&mut self, names: &[String], file: &Path) -> Result<ServerCert, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
            // The CA no longer knows the cached account (a private CA's database was reset,
            // say): register a new one and order again, once.
            Err(instant_acme::Error::Api(problem)) if problem.r#type.as_deref() == Some(ACCOUNT_UNKNOWN) => {
                warn!("the CA does not know the cached ACME account ({problem}); registering a new one");
                self.account = None;
                cache_dir::forget_account(&self.dir)?;
                self.account().await?.new_order(&NewOrder::new(&identifiers)).await?
            }
            result => result?,
        };
        let kind = match self.challenge {
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
                challenge: self.challenge.as_str(),
                domain: domain.clone(),
            })?;
            let key_authorization = challenge.key_authorization();
            match self.challenge {
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
        let certified =
            certified_key_from_pem(&file_text, &file_text).map_err(|e| AcmeError::Certificate(CertError::Load(e)))?;
        let cert = ServerCert::new(certified, file, SystemTime::now()).map_err(AcmeError::Certificate)?;
        cache_dir::save_certificate(file, &file_text);
        Ok(cert)
    }
}

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
