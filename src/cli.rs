//! The command line: `serve`, `publish`, `check-config`, `doctor` and `demo`, with their exit codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jwks_edge::app::{App, Listeners};
use jwks_edge::config::Config;
use jwks_edge::edge::access_log::{AccessFormat, AccessLog};
use jwks_edge::tls::resolver::ServerCert;
use std::time::SystemTime;

#[derive(Debug, Parser)]
#[command(
    name = "jwks-edge",
    version,
    about = "Publishes OpenID Connect discovery and JWKS documents from memory, at the edge"
)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "JWKS_EDGE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "JWKS_EDGE_CONFIG", value_name = "PATH")]
        config: PathBuf,
    },
    /// Fetch, check and rewrite the documents and push them to the [[publish]] sinks,
    /// without public listeners (the admin listener still runs). Exit 2 on a config error.
    Publish {
        #[arg(long, env = "JWKS_EDGE_CONFIG", value_name = "PATH")]
        config: PathBuf,
        /// Fetch each document once, publish, and exit: 0 when every sink holds the
        /// current documents, 1 when any failed (each named with its reason).
        #[arg(long)]
        once: bool,
    },
    /// Load and validate a configuration, print the effective configuration, exit 2 on
    /// error. Certificate, CA and pre-published key files are checked when present, warned
    /// about when absent.
    CheckConfig {
        #[arg(long, env = "JWKS_EDGE_CONFIG", value_name = "PATH")]
        config: PathBuf,
    },
    /// Start an embedded GitLab-shaped IdP with jwks-edge in front of it, and print
    /// commands to compare the two.
    Demo {
        /// HTTPS listener of the proxy.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Admin listener (/healthz, /readyz).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Also serve plain HTTP here (as behind a TLS load balancer; handy for load tools).
        #[arg(long)]
        listen_plain: Option<SocketAddr>,
    },
    /// Run, from the relying party's side, every check that explains an
    /// InvalidIdentityToken; exit 1 when one fails.
    Doctor {
        /// The issuer URL, exactly as tokens carry it in `iss`.
        issuer_url: String,
        /// A token to check (a file, or - for standard input).
        #[arg(long, value_name = "FILE|-")]
        token: Option<String>,
        /// An expected audience (the provider's client ID); repeatable.
        #[arg(long = "audience", value_name = "AUD")]
        audiences: Vec<String>,
        /// Trust this PEM bundle instead of the system roots.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// Use ADDR for HOST:PORT, as curl's --resolve; repeatable.
        #[arg(long, value_name = "HOST:PORT:ADDR")]
        resolve: Vec<jwks_edge::doctor::ResolveOverride>,
        /// Bound on each network step.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// One JSON document with every check.
        #[arg(long)]
        json: bool,
        /// Accept private, loopback and link-local addresses (testing a deployment).
        #[arg(long)]
        allow_private: bool,
        /// The role's trust policy (JSON), evaluated against the token's claims.
        #[arg(long, value_name = "POLICY.json")]
        trust_policy: Option<PathBuf>,
        /// A client ID of the IAM OIDC provider, checked before the trust policy; repeatable.
        #[arg(long = "provider-audience", value_name = "AUD")]
        provider_audiences: Vec<String>,
        /// A thumbprint of the IAM OIDC provider (SHA-1 hex, either case); repeatable.
        #[arg(long = "thumbprint", value_name = "SHA1")]
        thumbprints: Vec<String>,
        /// Also check this cloud's limits: aws, gcp, azure or all.
        #[arg(long, default_value = "aws", value_name = "aws|gcp|azure|all")]
        cloud: jwks_edge::doctor::Cloud,
    },
    /// Exit 0 when the admin listener's /healthz answers 200 within 3 s, else 1 (for
    /// container HEALTHCHECKs: the image has no shell or curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: http::Uri,
    },
}

/// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
const RUNTIME_FAILURE: u8 = 1;
const CONFIG_ERROR: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = init_logging(cli.log_format);
    let access_format = match cli.log_format {
        LogFormat::Text => AccessFormat::Text,
        LogFormat::Json => AccessFormat::Json,
    };
    let access_log = AccessLog::new(access_format, log.handle());
    let succeeded = |()| ExitCode::SUCCESS;
    let result = match cli.command {
        Command::Serve { config } => serve(config, access_log).map(succeeded),
        Command::Publish { config, once } => publish(config, once),
        Command::CheckConfig { config } => check_config(config).map(succeeded),
        Command::Healthcheck { url } => runtime().and_then(|rt| rt.block_on(healthcheck(url))).map(succeeded),
        Command::Doctor {
            issuer_url,
            token,
            audiences,
            ca_file,
            resolve,
            timeout,
            json,
            allow_private,
            trust_policy,
            provider_audiences,
            thumbprints,
            cloud,
        } => doctor(
            jwks_edge::doctor::Options {
                issuer: issuer_url,
                token: None,
                audiences,
                ca_file,
                resolve,
                timeout,
                allow_private,
                assume_public: Vec::new(),
                jwks_fetches: 3,
                trust_policy: None,
                provider_audiences,
                thumbprints,
                cloud,
            },
            token,
            trust_policy,
            json,
        ),
        Command::Demo {
            listen,
            admin_listen,
            listen_plain,
        } => runtime().and_then(|rt| {
            rt.block_on(crate::demo::run(listen, admin_listen, listen_plain, access_log))
                .map_err(|err| (RUNTIME_FAILURE, err))
                .map(succeeded)
        }),
    };
    // Returning (never `process::exit`) drops `log`, which flushes the log sink.
    match result {
        Ok(code) => code,
        Err((code, err)) => {
            // `{:#}` prints the whole cause chain on one line, once.
            eprintln!("error: {err:#}");
            ExitCode::from(code)
        }
    }
}

/// Logs are appended to a bounded memory buffer that a thread writes to stderr every
/// 5 ms (see `log_sink`), so neither a slow stderr nor a burst of access-log lines can
/// hold up a request. The returned sink writes what is left when dropped.
fn init_logging(format: LogFormat) -> jwks_edge::telemetry::log_sink::LogSink {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let sink = jwks_edge::telemetry::log_sink::LogSink::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.writer());
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    sink
}

type Outcome<T = ()> = Result<T, (u8, anyhow::Error)>;

fn runtime() -> Result<tokio::runtime::Runtime, (u8, anyhow::Error)> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|err| (RUNTIME_FAILURE, err))
}

/// Validates the file, then every file it names that exists on this machine. A missing
/// certificate or CA file is a warning here (secrets are often mounted only where the
/// proxy runs) and an error for `serve`; a present but broken one is an error for both.
fn check_config(path: PathBuf) -> Outcome {
    let config = Config::load(&path).map_err(|err| (CONFIG_ERROR, err.into()))?;
    let mut missing = Vec::new();
    let mut present = |key: String, file: &std::path::Path| {
        let exists = file.exists();
        if !exists {
            missing.push(format!("{key} = {:?}: file not found here", file.display().to_string()));
        }
        exists
    };
    if let Some(tls) = &config.server.tls {
        for (i, pair) in tls.certs.iter().enumerate() {
            let key = if i == 0 {
                "server.tls".to_owned()
            } else {
                format!("server.tls.certs[{}]", i - 1)
            };
            if present(format!("{key}.cert"), &pair.cert) & present(format!("{key}.key"), &pair.key) {
                ServerCert::load(pair, SystemTime::now()).map_err(|err| (CONFIG_ERROR, err.into()))?;
            }
        }
    }
    if let Some(acme) = config.server.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        let ca = acme
            .directory_ca
            .as_deref()
            .filter(|ca| present("server.tls.acme.directory_ca".to_owned(), ca));
        jwks_edge::tls::client_config(ca, None).map_err(|err| (CONFIG_ERROR, err.into()))?;
    }
    for (i, issuer) in config.issuers.iter().enumerate() {
        let ca = issuer
            .upstream_ca
            .as_deref()
            .filter(|ca| present(format!("issuer[{i}].upstream_ca"), ca));
        let client_auth = issuer.upstream_client_auth.as_ref().filter(|auth| {
            present(format!("issuer[{i}].upstream_client_cert"), &auth.cert)
                & present(format!("issuer[{i}].upstream_client_key"), &auth.key)
        });
        let client_auth = client_auth.map(|a| (a.cert.as_path(), a.key.as_path()));
        jwks_edge::tls::client_config(ca, client_auth).map_err(|err| (CONFIG_ERROR, err.into()))?;
        if let Some(token) = &issuer.upstream_bearer_token_file {
            present(format!("issuer[{i}].upstream_bearer_token_file"), token);
        }
        let key = format!("issuer[{i}].prepublished_jwks_file");
        if let Some(file) = issuer
            .prepublished_jwks_file
            .as_deref()
            .filter(|f| present(key.clone(), f))
        {
            jwks_edge::upstream::keyset::prepublished::PrepublishedKeys::load(
                file,
                config.cache.max_document_bytes,
                config.cache.key_cap,
            )
            .map_err(|err| (CONFIG_ERROR, anyhow::Error::new(err).context(key)))?;
        }
    }
    print!("{config}");
    for warning in missing {
        eprintln!("warning: {warning} (serve will refuse to start without it)");
    }
    Ok(())
}

fn serve(path: PathBuf, access_log: AccessLog) -> Outcome {
    let rt = runtime()?;
    rt.block_on(async {
        let config = Config::load(&path).map_err(|err| (CONFIG_ERROR, err.into()))?;
        open_file_limit(&config)?;
        // Certificates and CA bundles the config names are part of the configuration.
        let mut app = App::new(config.clone()).map_err(|err| (CONFIG_ERROR, err.into()))?;
        app.set_access_log(access_log);
        let listeners = Listeners::bind(&config)
            .await
            .map_err(|err| (RUNTIME_FAILURE, err.into()))?;
        tracing::info!(config = %path.display(), issuers = config.issuers.len(), "jwks-edge starting");
        let reload = app.reload_trigger();
        let acme = config.server.tls.as_ref().is_some_and(|t| t.acme.is_some());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangups.recv().await.is_some() {
                if acme {
                    tracing::info!("SIGHUP received: certificates come from ACME, nothing to reload");
                } else {
                    tracing::info!("SIGHUP received: reloading certificates");
                    reload.notify_one();
                }
            }
        });
        app.run(listeners, crate::shutdown::signal())
            .await
            .map_err(|err| (RUNTIME_FAILURE, err.into()))
    })
}

/// `publish`: the refreshers and publishers (and the admin listener) until a signal, or
/// with `--once` a single round whose failures decide the exit code.
fn publish(path: PathBuf, once: bool) -> Outcome<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let config = Config::load(&path).map_err(|err| (CONFIG_ERROR, err.into()))?;
        if config.publish.is_empty() {
            return Err((
                CONFIG_ERROR,
                anyhow::anyhow!("{}: no [[publish]] section, nothing to publish to", path.display()),
            ));
        }
        // No public listener runs, so their certificates are neither loaded nor ordered:
        // a config shared with the serving replicas works where its TLS files are absent.
        let mut publishing = config.clone();
        publishing.server.tls = None;
        publishing.server.listen = None;
        publishing.server.listen_plain = None;
        let app = App::new(publishing).map_err(|err| (CONFIG_ERROR, err.into()))?;
        tracing::info!(
            config = %path.display(),
            issuers = config.issuers.len(),
            sinks = config.publish.len(),
            once,
            "jwks-edge publishing"
        );
        if once {
            let failures = app.publish_once().await.map_err(|err| (RUNTIME_FAILURE, err.into()))?;
            for failure in &failures {
                eprintln!(
                    "error: {}: issuer {:?}: {}",
                    failure.sink, failure.issuer, failure.reason
                );
            }
            return Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(RUNTIME_FAILURE)
            });
        }
        let admin = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.admin.listen))
            .map_err(|err| (RUNTIME_FAILURE, err))?;
        app.run_publishing(Some(admin), crate::shutdown::signal())
            .await
            .map_err(|err| (RUNTIME_FAILURE, err.into()))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Raises RLIMIT_NOFILE to its hard limit and refuses to start (exit 2) when even that
/// cannot hold the configured connections.
fn open_file_limit(config: &Config) -> Outcome {
    use jwks_edge::edge::fd_limit;
    let (limit, failed) = fd_limit::raise();
    if let Some(err) = failed {
        tracing::warn!(error = %err, soft = ?limit.soft, hard = ?limit.hard, "cannot raise the open-file limit");
    }
    let need = fd_limit::FdNeed::of(config);
    fd_limit::check(limit, need).map_err(|err| (CONFIG_ERROR, err.into()))?;
    tracing::debug!(soft = ?limit.soft, need = need.total(), "open-file limit");
    Ok(())
}

async fn healthcheck(url: http::Uri) -> Outcome {
    let check = async {
        let authority = url.authority().context("the URL has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = http::Request::get(url.path())
            .header(http::header::HOST, authority.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let status = sender.send_request(request).await?.status();
        anyhow::ensure!(status == http::StatusCode::OK, "{url} answered {status}");
        Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(result) => result.map_err(|err: anyhow::Error| (RUNTIME_FAILURE, err)),
        Err(_) => Err((RUNTIME_FAILURE, anyhow::anyhow!("{url} did not answer within 3s"))),
    }
}

fn doctor(
    mut options: jwks_edge::doctor::Options,
    token: Option<String>,
    trust_policy: Option<PathBuf>,
    json: bool,
) -> Outcome<ExitCode> {
    use std::io::Read;
    options.token = match token.as_deref() {
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the token from standard input")
                .map_err(|err| (CONFIG_ERROR, err))?;
            Some(text)
        }
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {path:?}"))
                .map_err(|err| (CONFIG_ERROR, err))?,
        ),
    };
    if let Some(path) = &trust_policy {
        options.trust_policy = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --trust-policy {}", path.display()))
                .map_err(|err| (CONFIG_ERROR, err))?,
        );
    }
    if let Some(bad) = options.thumbprints.iter().find(|t| {
        let hex = jwks_edge::doctor::normalise_thumbprint(t);
        hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit())
    }) {
        return Err((
            CONFIG_ERROR,
            anyhow::anyhow!("--thumbprint {bad:?} is not a SHA-1 (40 hex digits)"),
        ));
    }
    if let Some(ca) = &options.ca_file {
        // An unusable --ca-file is a usage error (exit 2), not a finding about the issuer.
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read --ca-file {}", ca.display()))
            .map_err(|err| (CONFIG_ERROR, err))?;
        if certs.is_empty() {
            return Err((
                CONFIG_ERROR,
                anyhow::anyhow!("--ca-file {} holds no certificate", ca.display()),
            ));
        }
    }
    let rt = runtime()?;
    let report = rt.block_on(jwks_edge::doctor::run(options));
    if json {
        println!("{}", report.to_json_text());
    } else {
        print!(
            "{}",
            report.render(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        );
    }
    if report.worst() == jwks_edge::doctor::Status::Fail {
        // The report says what failed; exit 1 without a second message.
        return Ok(ExitCode::from(RUNTIME_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}
