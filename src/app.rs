//! `App`: builds every part from a `Config` and runs them on listeners it is given.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::cache::health::HealthBoard;
use crate::cache::key_board::KeyBoard;
use crate::cache::revalidate::Revalidations;
use crate::cache::routes::Router;
use crate::cache::snapshot::Snapshots;
use crate::cache::store::DocumentStore;
use crate::config::limits::{Limits, ADMIN_MAX_CONNECTIONS};
use crate::config::{AcmeChallenge, Config};
use crate::edge::access_log::AccessLog;
use crate::edge::proxy::Proxy;
use crate::edge::server::{serve, Endpoint};
use crate::model::document::CachePolicy;
use crate::model::listener::Listener;
use crate::ops::admin::{Admin, Startup};
use crate::publish::publisher::{pairs, OnceFailure, Publisher};
use crate::publish::sink::{Sink, SinkError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::reach::ReachBoard;
use crate::tls::acme::{AcmeError, AcmeManager};
use crate::tls::challenges::Challenges;
use crate::tls::resolver::{reload_loop, CertError, CertResolver, CertSet};
use crate::tls::{self, TlsError};
use crate::upstream::fetch::{Fetcher, UpstreamAccess};
use crate::upstream::keyset::prepublished::PrepublishedError;
use crate::upstream::keyset::KeySetRules;
use crate::upstream::permits::UpstreamPermits;
use crate::upstream::refresh::{spawn_all, IssuerRefresh, StartupReport};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the server certificates")]
    Certificate(#[source] CertError),
    #[error("cannot set up TLS")]
    Tls(#[source] TlsError),
    #[error("cannot set up upstream TLS for issuer {issuer:?}")]
    UpstreamTls {
        issuer: String,
        #[source]
        source: TlsError,
    },
    #[error("cannot use cache.state_dir {path:?}")]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up ACME certificates")]
    Acme(#[source] AcmeError),
    #[error("cannot use issuer[{index}].prepublished_jwks_file (issuer {issuer:?})")]
    Prepublished {
        index: usize,
        issuer: String,
        #[source]
        source: PrepublishedError,
    },
    #[error("[server.tls] is configured but no HTTPS listener was given")]
    NoHttpsListener,
    #[error("cannot set up publish[{index}]")]
    Publish {
        index: usize,
        #[source]
        source: SinkError,
    },
    #[error("the config has no [[publish]]: nothing to publish to")]
    NothingToPublish,
}

/// The listeners `App::run` serves; the caller binds them (tests bind port 0).
pub struct Listeners {
    /// Required exactly when the config has `[server.tls]`.
    pub https: Option<TcpListener>,
    pub plain: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address the config names.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        async fn bind(addr: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
            match addr {
                Some(addr) => TcpListener::bind(addr)
                    .await
                    .map(Some)
                    .map_err(|err| std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))),
                None => Ok(None),
            }
        }
        Ok(Listeners {
            https: bind(config.server.listen).await?,
            plain: bind(config.server.listen_plain).await?,
            admin: bind(Some(config.admin.listen)).await?,
        })
    }
}

pub struct App {
    config: Arc<Config>,
    store: Arc<DocumentStore>,
    router: Arc<Router>,
    health: Arc<HealthBoard>,
    keys: Arc<KeyBoard>,
    metrics: Arc<Metrics>,
    policy: CachePolicy,
    tls: Option<TlsAcceptor>,
    /// The HTTPS certificates, swapped by the reload task.
    certs: Option<Arc<CertResolver>>,
    /// Notified to reload the certificates now (the command line wires SIGHUP to it).
    reload: Arc<Notify>,
    /// Where access lines go, given by the command line (which owns the log output).
    access_log: Option<AccessLog>,
    refreshers: Vec<IssuerRefresh>,
    /// Shared by the request path (which pokes) and the key set refreshers (which fetch).
    revalidation: Arc<Revalidations>,
    /// Counted by the request path, shown by the admin listener.
    reach: Arc<ReachBoard>,
    /// Orders and renews the certificates, with `[server.tls.acme]`.
    acme: Option<AcmeManager>,
    /// HTTP-01 answers for the public listeners, with `challenge = "http-01"`.
    acme_http: Option<Arc<Challenges>>,
    /// With `[[publish]]`: keeps the sinks holding the current documents.
    publisher: Option<Arc<Publisher>>,
}

impl App {
    /// Loads certificates, upstream trust and snapshots; fetches nothing yet.
    pub fn new(config: Config) -> Result<App, StartError> {
        let policy = CachePolicy {
            max_age: config.cache.max_age,
            refresh: config.cache.refresh,
            fetch_timeout: config.cache.fetch_timeout,
            stale_if_error: config.cache.stale_if_error,
        };
        // Public roots only: the clouds' endpoints (and their credential services) are
        // public; an S3-compatible store on plain http is written as http:// in `endpoint`.
        let sinks = config
            .publish
            .iter()
            .enumerate()
            .map(|(index, sink)| {
                let tls = tls::client_config(None, None).map_err(StartError::Tls)?;
                Sink::open(sink, tls).map_err(|source| StartError::Publish { index, source })
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        let publish_pairs = pairs(&sinks)
            .into_iter()
            .map(|(s, i)| (sinks[s].url().to_owned(), config.issuers[i].name.clone()))
            .collect();
        let metrics = Arc::new(Metrics::with_publish(
            config.issuers.iter().map(|i| i.name.clone()).collect(),
            publish_pairs,
        ));
        let (mut tls, mut certs, mut acme, mut acme_http) = (None, None, None, None);
        match config.server.tls.as_ref().map(|t| (t, t.acme.as_ref())) {
            Some((_, Some(acme_config))) => {
                let challenges = Arc::new(Challenges::default());
                let resolver = Arc::new(CertResolver::with_challenges(
                    CertSet { certs: Vec::new() },
                    challenges.clone(),
                ));
                let manager = AcmeManager::new(acme_config.clone(), resolver.clone(), challenges.clone(), &metrics)
                    .map_err(StartError::Acme)?;
                let tls_alpn = acme_config.challenge == AcmeChallenge::TlsAlpn01;
                let server_config = tls::server_config(resolver.clone(), tls_alpn).map_err(StartError::Tls)?;
                tls = Some(TlsAcceptor::from(server_config));
                certs = Some(resolver);
                acme_http = (!tls_alpn).then_some(challenges);
                acme = Some(manager);
            }
            Some((server_tls, None)) => {
                let set = CertSet::load(&server_tls.certs, SystemTime::now()).map_err(StartError::Certificate)?;
                let resolver = Arc::new(CertResolver::new(set));
                let server_config = tls::server_config(resolver.clone(), false).map_err(StartError::Tls)?;
                tls = Some(TlsAcceptor::from(server_config));
                certs = Some(resolver);
            }
            None => {}
        }
        let store = Arc::new(DocumentStore::new(config.issuers.len()));
        let router = Arc::new(Router::new(&config.issuers));
        warn_plain_http(&config);
        let health = Arc::new(HealthBoard::new(config.issuers.len()));
        let revalidation = Arc::new(Revalidations::new(
            config.issuers.len(),
            config.cache.revalidate_after,
            tokio::time::Instant::now(),
        ));
        let snapshots = match &config.cache.state_dir {
            Some(dir) => Some(Snapshots::open(dir).map_err(|source| StartError::StateDir {
                path: dir.clone(),
                source,
            })?),
            None => None,
        };
        let key_board = Arc::new(KeyBoard::new(config.issuers.len()));
        let permits = Arc::new(UpstreamPermits::new(config.cache.max_fetches_per_upstream));
        let startup_report = Arc::new(StartupReport::new(
            2 * config.issuers.len(),
            2 * (config.cache.refresh + config.cache.fetch_timeout),
        ));
        // One fetcher per trust setting, shared by its issuers with their own credentials:
        // a client per issuer held its own TLS config (root store, a session cache sized
        // for 256 servers) and its own idle connections to the same upstream.
        let mut fetchers: std::collections::HashMap<_, Fetcher> = std::collections::HashMap::new();
        let mut refreshers = config
            .issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| {
                let client_auth = issuer
                    .upstream_client_auth
                    .as_ref()
                    .map(|t| (t.cert.as_path(), t.key.as_path()));
                let access = UpstreamAccess {
                    bearer_token_file: issuer.upstream_bearer_token_file.clone(),
                    // Validated as an authority, hence a valid header value.
                    host: issuer
                        .upstream_host
                        .as_deref()
                        .and_then(|h| HeaderValue::from_str(h).ok()),
                };
                let trust = (
                    issuer.upstream_ca.clone(),
                    client_auth.map(|(c, k)| (c.to_owned(), k.to_owned())),
                );
                let fetcher = match fetchers.get(&trust) {
                    Some(shared) => shared.with_access(access),
                    None => {
                        let client =
                            tls::client_config(issuer.upstream_ca.as_deref(), client_auth).map_err(|source| {
                                StartError::UpstreamTls {
                                    issuer: issuer.name.clone(),
                                    source,
                                }
                            })?;
                        let fetcher = Fetcher::new(
                            client,
                            config.cache.fetch_timeout,
                            config.cache.max_document_bytes,
                            access,
                            permits.clone(),
                            // A fetch that cannot start within a period would overlap the
                            // next one anyway; the wait does not eat into fetch_timeout.
                            config.cache.refresh,
                        );
                        fetchers.insert(trust, fetcher.clone());
                        fetcher
                    }
                };
                let key_rules = KeySetRules::new(issuer, config.cache.key_cap, config.cache.max_document_bytes)
                    .map_err(|source| StartError::Prepublished {
                        index,
                        issuer: issuer.name.clone(),
                        source,
                    })?;
                Ok(IssuerRefresh {
                    index,
                    issuer: Arc::new(issuer.clone()),
                    fetcher,
                    store: store.clone(),
                    router: router.clone(),
                    health: health.clone(),
                    snapshots: snapshots.clone(),
                    policy,
                    keep_removed_keys: config.cache.keep_removed_keys,
                    key_cap: config.cache.key_cap,
                    key_rules: Arc::new(key_rules),
                    key_board: key_board.clone(),
                    restored_keys: None,
                    metrics: metrics.clone(),
                    revalidation: revalidation.clone(),
                    startup: startup_report.clone(),
                })
            })
            .collect::<Result<Vec<_>, StartError>>()?;
        // Last good copies are in memory before any listener accepts.
        refreshers.iter_mut().for_each(IssuerRefresh::restore);
        let publisher = (!sinks.is_empty()).then(|| {
            Arc::new(Publisher::new(
                refreshers.iter().map(|r| r.issuer.clone()).collect(),
                sinks,
                store.clone(),
                health.clone(),
                metrics.clone(),
                config.cache.refresh,
                startup_report.deadline(),
            ))
        });
        let config_issuers = config.issuers.len();
        Ok(App {
            config: Arc::new(config),
            store,
            router,
            health,
            keys: key_board,
            metrics,
            policy,
            tls,
            certs,
            reload: Arc::new(Notify::new()),
            access_log: None,
            refreshers,
            revalidation,
            reach: Arc::new(ReachBoard::new(config_issuers)),
            acme,
            acme_http,
            publisher,
        })
    }

    /// Gives the access log its output; used only when `[log] access` is on.
    pub fn set_access_log(&mut self, log: AccessLog) {
        self.access_log = Some(log);
    }

    /// Notify it to reload the certificates at once (they are also polled for changes).
    pub fn reload_trigger(&self) -> Arc<Notify> {
        self.reload.clone()
    }

    /// Starts the refreshers (and certificate reloads, and publishers with `[[publish]]`),
    /// serves until `shutdown` completes, then drains and stops.
    pub async fn run(self, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        if self.tls.is_some() && listeners.https.is_none() {
            return Err(StartError::NoHttpsListener);
        }
        self.run_on(listeners, shutdown, true).await
    }

    /// `jwks-edge publish`: the refreshers and publishers, and the admin listener if
    /// given, without public listeners (nor certificates for them) until `shutdown`.
    pub async fn run_publishing(
        self,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        if self.publisher.is_none() {
            return Err(StartError::NothingToPublish);
        }
        let listeners = Listeners {
            https: None,
            plain: None,
            admin,
        };
        self.run_on(listeners, shutdown, false).await
    }

    /// `jwks-edge publish --once`: fetches each document once, brings every sink up to
    /// date, and returns what could not be published (empty when every sink holds the
    /// current documents).
    pub async fn publish_once(self) -> Result<Vec<OnceFailure>, StartError> {
        let Some(publisher) = self.publisher else {
            return Err(StartError::NothingToPublish);
        };
        let (refreshers, _controls) = spawn_all(self.refreshers);
        let failures = publisher.publish_once().await;
        drop(refreshers);
        Ok(failures)
    }

    async fn run_on(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        public: bool,
    ) -> Result<(), StartError> {
        let startup = Startup::new(self.config.admin.startup_grace);
        let (mut refreshers, controls) = spawn_all(self.refreshers);
        if let Some(publisher) = &self.publisher {
            publisher.clone().spawn(&mut refreshers);
        }
        let publish_board = self.publisher.as_ref().map(|p| p.board.clone());
        let acme_status = self.acme.as_ref().map(AcmeManager::status);
        if !public {
            // No public listener: no certificate to order or reload.
        } else if let Some(acme) = self.acme {
            refreshers.spawn(acme.run());
        } else if let (Some(resolver), Some(server_tls)) = (&self.certs, &self.config.server.tls) {
            refreshers.spawn(reload_loop(
                resolver.clone(),
                server_tls.certs.clone(),
                server_tls.reload_interval,
                self.reload.clone(),
                self.metrics.certificate_reload_failures.clone(),
            ));
        }
        let mut proxy = Proxy::new(
            self.router.clone(),
            self.store.clone(),
            self.policy,
            self.config.server.deadline,
            self.metrics.clone(),
            self.access_log.clone().filter(|_| self.config.log.access),
        );
        if let Some(challenges) = self.acme_http.clone() {
            proxy = proxy.with_acme_http(challenges);
        }
        proxy = proxy
            .with_revalidation(self.revalidation.clone())
            .with_reach(self.reach.clone());
        let proxy = Arc::new(proxy);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let limits = self.config.server.limits;
        let endpoint = |name, listener, tls| Endpoint {
            name,
            listener,
            tls,
            limits: match name {
                Listener::Admin => Limits {
                    max_connections: limits.max_connections.min(ADMIN_MAX_CONNECTIONS),
                    max_connections_per_address: limits.max_connections.min(ADMIN_MAX_CONNECTIONS),
                    // The kernel's autotuning: a scrape of a big fleet is megabytes, and
                    // through the public side's 16 KiB send buffer 7.8 MB took 3.8 s on
                    // loopback instead of 0.07 s. Its few clients are trusted.
                    send_buffer_bytes: 0,
                    ..limits
                },
                _ => limits,
            },
            metrics: self.metrics.listener(name),
        };
        let mut servers = tokio::task::JoinSet::new();
        if let (Some(listener), Some(tls)) = (listeners.https, self.tls.clone()) {
            servers.spawn(serve(
                endpoint(Listener::Https, listener, Some(tls)),
                proxy.clone(),
                until_stopped(),
            ));
        }
        if let Some(listener) = listeners.plain {
            servers.spawn(serve(
                endpoint(Listener::Plain, listener, None),
                proxy.clone(),
                until_stopped(),
            ));
        }
        if let Some(listener) = listeners.admin {
            let admin = Arc::new(Admin {
                issuers: self.config.issuers.clone(),
                store: self.store.clone(),
                health: self.health.clone(),
                keys: self.keys.clone(),
                // Without public listeners no certificate is served, nor can it fail readiness.
                certs: self.certs.clone().filter(|_| public),
                acme: acme_status.filter(|_| public),
                policy: self.policy,
                metrics: self.metrics.clone(),
                refresh: controls,
                token_file: self.config.admin.token_file.clone(),
                readiness: self.config.admin.readiness,
                startup,
                publish: publish_board,
                reach: self.reach.clone(),
            });
            servers.spawn(serve(endpoint(Listener::Admin, listener, None), admin, until_stopped()));
        }
        shutdown.await;
        info!("shutting down: no new connections, draining");
        let _ = stop.send(true);
        while servers.join_next().await.is_some() {}
        drop(refreshers);
        info!("stopped");
        Ok(())
    }
}

/// One WARN line for every issuer fetched over plain http: its documents (and anything
/// sent with them) cross the network unprotected, and can be altered on the way.
fn warn_plain_http(config: &Config) {
    let plain: Vec<&str> = config
        .issuers
        .iter()
        .filter(|i| i.fetches_over_http())
        .map(|i| i.name.as_str())
        .collect();
    if plain.is_empty() {
        return;
    }
    const SHOWN: usize = 10;
    let more = plain.len().saturating_sub(SHOWN);
    let names = plain[..plain.len().min(SHOWN)].join(", ");
    warn!(
        count = plain.len(),
        "{} issuer(s) fetched over plain http: {names}{}: anyone on that network path can read or alter the \
         documents; use an https upstream where the network is not trusted",
        plain.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
}
