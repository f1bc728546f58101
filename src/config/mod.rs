//! Configuration: the TOML file (`raw`) validated into the typed `Config` the program runs on.

mod raw;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base_url::BaseUrl;
use crate::server::Limits;
use raw::{RawCache, RawConfig, RawIssuer, RawServer};

/// AWS STS gives up on a discovery or key fetch after about this long.
const STS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path:?} is not valid")]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{key} = {value:?}: {reason}")]
    Invalid { key: String, value: String, reason: String },
    #[error("{key}: {reason}")]
    Missing { key: String, reason: String },
}

fn invalid(key: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The validated configuration. Paths are absolute or relative to the working directory
/// (relative paths in the file are resolved against the file's own directory).
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub cache: Cache,
    pub log: Log,
    pub issuers: Vec<Issuer>,
}

#[derive(Clone, Debug)]
pub struct Server {
    /// HTTPS listener; present exactly when `tls` is.
    pub listen: Option<SocketAddr>,
    pub listen_plain: Option<SocketAddr>,
    pub deadline: Duration,
    pub limits: Limits,
    pub tls: Option<ServerTls>,
}

/// The HTTPS listener's certificates.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// `[server.tls] cert/key` first (the default), then each `[[server.tls.certs]]`,
    /// chosen by the client's SNI.
    pub certs: Vec<Tls>,
    /// How often the files are checked for changes (SIGHUP reloads at once).
    pub reload_interval: Duration,
}

/// A certificate chain file (PEM, leaf first) and its private key file.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Holds the bearer token that `POST /admin/refresh` requires; without it, admin
    /// actions are off (404).
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Log {
    /// One line per public request (method, host, path, status, cache status, duration).
    pub access: bool,
}

#[derive(Clone, Debug)]
pub struct Cache {
    pub max_age: Duration,
    pub refresh: Duration,
    pub stale_if_error: Duration,
    pub fetch_timeout: Duration,
    /// How long keys that vanished upstream stay published; zero is off.
    pub keep_removed_keys: Duration,
    pub max_document_bytes: usize,
    pub state_dir: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Issuer {
    /// Short name for logs and admin actions; defaults to the public URL's host and path.
    pub name: String,
    /// Exactly the tokens' `iss`, as configured.
    pub public_url: String,
    pub public: BaseUrl,
    pub upstream: BaseUrl,
    /// Absolute path on the public host where the key set is published.
    pub public_jwks_path: Option<String>,
    /// Where the key set is fetched, overriding what the discovery document implies.
    pub upstream_jwks_url: Option<String>,
    pub upstream_ca: Option<PathBuf>,
    /// Client certificate chain and key for upstreams that require mutual TLS.
    pub upstream_client_auth: Option<Tls>,
    /// Read before every fetch and sent as `Authorization: Bearer` (Kubernetes rotates
    /// service-account tokens on disk).
    pub upstream_bearer_token_file: Option<PathBuf>,
    /// `Host` header sent upstream instead of the URL's authority.
    pub upstream_host: Option<String>,
}

impl Issuer {
    /// The public path of the discovery document.
    pub fn discovery_path(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.public.path())
    }

    /// The upstream URL of the discovery document.
    pub fn upstream_discovery_url(&self) -> String {
        self.upstream.join("/.well-known/openid-configuration")
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|err| match err {
            ConfigError::Syntax { source, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Validates TOML text; relative paths are resolved against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Syntax {
            path: PathBuf::from("<text>"),
            source,
        })?;
        let resolve = |p: &str| base_dir.join(p);
        let server = validate_server(raw.server, &resolve)?;
        let admin = Admin {
            listen: parse_addr("admin.listen", raw.admin.listen.as_deref().unwrap_or("127.0.0.1:9090"))?,
            token_file: match raw.admin.token_file.as_deref() {
                Some("") => return Err(invalid("admin.token_file", "", "a file path is required")),
                Some(path) => Some(resolve(path)),
                None => None,
            },
        };
        let log = Log {
            access: raw.log.access.unwrap_or(true),
        };
        let cache = validate_cache(raw.cache, &resolve)?;
        if raw.issuer.is_empty() {
            return Err(ConfigError::Missing {
                key: "issuer".into(),
                reason: "at least one [[issuer]] with public_url and upstream is required".into(),
            });
        }
        let mut issuers = Vec::with_capacity(raw.issuer.len());
        let mut routes = HashSet::new();
        let mut names = HashSet::new();
        for (i, raw) in raw.issuer.into_iter().enumerate() {
            let issuer = validate_issuer(i, raw, &resolve)?;
            if !routes.insert((issuer.public.host().to_owned(), issuer.public.path().to_owned())) {
                return Err(invalid(
                    format!("issuer[{i}].public_url"),
                    &issuer.public_url,
                    "another issuer already has this public URL",
                ));
            }
            if !names.insert(issuer.name.clone()) {
                return Err(invalid(
                    format!("issuer[{i}].name"),
                    &issuer.name,
                    "another issuer has this name",
                ));
            }
            issuers.push(issuer);
        }
        Ok(Config {
            server,
            admin,
            cache,
            log,
            issuers,
        })
    }
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            value,
            "expected an IP address and port such as \"0.0.0.0:8443\" or \"[::]:8443\"",
        )
    })
}

fn parse_duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    let duration = humantime::parse_duration(value)
        .map_err(|_| invalid(key, value, "expected a duration such as \"2s\", \"5m\" or \"24h\""))?;
    if duration.is_zero() {
        return Err(invalid(key, value, "must be greater than zero"));
    }
    Ok(duration)
}

fn key_name(i: usize, key: &str) -> String {
    format!("issuer[{i}].{key}")
}

fn parse_count(
    key: &str,
    value: Option<i64>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match usize::try_from(value) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(invalid(
            key,
            value.to_string(),
            format!("must be between {} and {}", range.start(), range.end()),
        )),
    }
}

fn validate_server(raw: RawServer, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Server, ConfigError> {
    let deadline = parse_duration("server.deadline", raw.deadline.as_deref(), "2s")?;
    if deadline >= STS_TIMEOUT {
        return Err(invalid(
            "server.deadline",
            raw.deadline.unwrap_or_default(),
            "must be under 5s: AWS STS gives up after about 5 seconds",
        ));
    }
    let listen_plain = raw
        .listen_plain
        .as_deref()
        .map(|v| parse_addr("server.listen_plain", v))
        .transpose()?;
    let tls = match raw.tls {
        None => None,
        Some(tls) => {
            let pair = |key_prefix: &str, cert: &str, key: &str| {
                for (k, value) in [("cert", cert), ("key", key)] {
                    if value.is_empty() {
                        return Err(invalid(format!("{key_prefix}.{k}"), value, "a file path is required"));
                    }
                }
                Ok(Tls {
                    cert: resolve(cert),
                    key: resolve(key),
                })
            };
            let mut certs = vec![pair("server.tls", &tls.cert, &tls.key)?];
            for (i, extra) in tls.certs.iter().enumerate() {
                certs.push(pair(&format!("server.tls.certs[{i}]"), &extra.cert, &extra.key)?);
            }
            let reload_interval = parse_duration("server.tls.reload_interval", tls.reload_interval.as_deref(), "10s")?;
            if reload_interval < Duration::from_millis(100) {
                return Err(invalid(
                    "server.tls.reload_interval",
                    tls.reload_interval.unwrap_or_default(),
                    "must be at least 100ms",
                ));
            }
            Some(ServerTls { certs, reload_interval })
        }
    };
    let listen = match (&tls, raw.listen.as_deref()) {
        (Some(_), value) => Some(parse_addr("server.listen", value.unwrap_or("0.0.0.0:8443"))?),
        (None, Some(value)) => {
            return Err(invalid(
                "server.listen",
                value,
                "the HTTPS listener needs [server.tls] cert and key (use server.listen_plain for plain HTTP)",
            ))
        }
        (None, None) => None,
    };
    if listen.is_none() && listen_plain.is_none() {
        return Err(ConfigError::Missing {
            key: "server".into(),
            reason: "no listener: set [server.tls] cert and key for HTTPS, or server.listen_plain".into(),
        });
    }
    if listen.is_some_and(|a| a.port() != 0) && listen == listen_plain {
        return Err(invalid(
            "server.listen_plain",
            raw.listen_plain.unwrap_or_default(),
            "is the same address as server.listen",
        ));
    }
    let defaults = Limits::default();
    let limits = Limits {
        max_connections: parse_count(
            "server.max_connections",
            raw.max_connections,
            defaults.max_connections,
            1..=1_000_000,
        )?,
        tls_handshake_timeout: parse_duration(
            "server.tls_handshake_timeout",
            raw.tls_handshake_timeout.as_deref(),
            "10s",
        )?,
        header_timeout: parse_duration("server.header_timeout", raw.header_timeout.as_deref(), "10s")?,
        idle_timeout: parse_duration("server.idle_timeout", raw.idle_timeout.as_deref(), "60s")?,
        max_header_bytes: parse_count(
            "server.max_header_bytes",
            raw.max_header_bytes,
            defaults.max_header_bytes,
            8192..=1024 * 1024,
        )?,
        max_concurrent_streams: parse_count(
            "server.max_concurrent_streams",
            raw.max_concurrent_streams,
            defaults.max_concurrent_streams as usize,
            1..=10_000,
        )? as u32,
        drain_timeout: parse_duration("server.drain_timeout", raw.drain_timeout.as_deref(), "10s")?,
    };
    Ok(Server {
        listen,
        listen_plain,
        deadline,
        limits,
        tls,
    })
}

fn validate_cache(raw: RawCache, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Cache, ConfigError> {
    let refresh = parse_duration("cache.refresh", raw.refresh.as_deref(), "60s")?;
    if refresh < Duration::from_secs(1) {
        return Err(invalid(
            "cache.refresh",
            raw.refresh.unwrap_or_default(),
            "must be at least 1s",
        ));
    }
    let fetch_timeout = parse_duration("cache.fetch_timeout", raw.fetch_timeout.as_deref(), "5s")?;
    let max_document_bytes = match raw.max_document_bytes {
        None => 1024 * 1024,
        Some(n) if (1024..=64 * 1024 * 1024).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid(
                "cache.max_document_bytes",
                n.to_string(),
                "must be between 1024 and 67108864 (64 MiB)",
            ))
        }
    };
    let state_dir = match raw.state_dir.as_deref() {
        Some("") => return Err(invalid("cache.state_dir", "", "a directory path is required")),
        Some(dir) => Some(resolve(dir)),
        None => None,
    };
    let stale_if_error = parse_duration("cache.stale_if_error", raw.stale_if_error.as_deref(), "24h")?;
    if stale_if_error < refresh + fetch_timeout {
        return Err(invalid(
            "cache.stale_if_error",
            raw.stale_if_error.unwrap_or_default(),
            format!(
                "must be at least cache.refresh + cache.fetch_timeout ({}), or good copies would expire between refreshes",
                humantime::format_duration(refresh + fetch_timeout)
            ),
        ));
    }
    let keep_removed_keys = match raw.keep_removed_keys.as_deref() {
        None => Duration::ZERO,
        Some(value) => humantime::parse_duration(value).map_err(|_| {
            invalid(
                "cache.keep_removed_keys",
                value,
                "expected a duration such as \"0s\" (off), \"10m\" or \"24h\"",
            )
        })?,
    };
    Ok(Cache {
        max_age: parse_duration("cache.max_age", raw.max_age.as_deref(), "5m")?,
        refresh,
        stale_if_error,
        fetch_timeout,
        keep_removed_keys,
        max_document_bytes,
        state_dir,
    })
}

fn validate_issuer(i: usize, raw: RawIssuer, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Issuer, ConfigError> {
    let key = |k: &str| format!("issuer[{i}].{k}");
    let public = BaseUrl::parse(&raw.public_url).map_err(|r| invalid(key("public_url"), &raw.public_url, r))?;
    if !public.is_https() {
        return Err(invalid(
            key("public_url"),
            &raw.public_url,
            "must be https: relying parties such as AWS STS only accept https issuers",
        ));
    }
    let upstream = BaseUrl::parse(&raw.upstream).map_err(|r| invalid(key("upstream"), &raw.upstream, r))?;
    let public_jwks_path = match raw.public_jwks_path {
        None => None,
        Some(path) => {
            let bad = !path.starts_with('/')
                || path.contains(['?', '#', '%', ' '])
                || path.contains("//")
                || path.split('/').any(|s| s == "." || s == "..");
            if bad {
                return Err(invalid(
                    key("public_jwks_path"),
                    &path,
                    "expected an absolute path such as \"/openid/v1/jwks\", without query, '%', '//', '.' or '..'",
                ));
            }
            if path == format!("{}/.well-known/openid-configuration", public.path()) {
                return Err(invalid(
                    key("public_jwks_path"),
                    &path,
                    "is the discovery document's path",
                ));
            }
            Some(path)
        }
    };
    let upstream_jwks_https = match raw.upstream_jwks_url.as_deref() {
        Some(v) => Some(
            BaseUrl::parse(v)
                .map_err(|r| invalid(key("upstream_jwks_url"), v, r))?
                .is_https(),
        ),
        None => None,
    };
    let upstream_ca = match raw.upstream_ca.as_deref() {
        Some("") => return Err(invalid(key("upstream_ca"), "", "a PEM file path is required")),
        Some(path) if !upstream.is_https() && upstream_jwks_https != Some(true) => {
            return Err(invalid(key("upstream_ca"), path, "only applies to an https upstream"))
        }
        Some(path) => Some(resolve(path)),
        None => None,
    };
    let any_https = upstream.is_https() || upstream_jwks_https == Some(true);
    let upstream_client_auth = match (raw.upstream_client_cert.as_deref(), raw.upstream_client_key.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
            if !any_https {
                return Err(invalid(
                    key_name(i, "upstream_client_cert"),
                    cert,
                    "only applies to an https upstream",
                ));
            }
            Some(Tls {
                cert: resolve(cert),
                key: resolve(key),
            })
        }
        (Some(cert), None) => {
            return Err(invalid(
                key_name(i, "upstream_client_cert"),
                cert,
                "needs upstream_client_key as well",
            ))
        }
        (None, Some(key)) => {
            return Err(invalid(
                key_name(i, "upstream_client_key"),
                key,
                "needs upstream_client_cert as well",
            ))
        }
        (Some(cert), Some(_)) => {
            return Err(invalid(
                key_name(i, "upstream_client_cert"),
                cert,
                "a file path is required",
            ))
        }
    };
    let upstream_bearer_token_file = match raw.upstream_bearer_token_file.as_deref() {
        Some("") => {
            return Err(invalid(
                key("upstream_bearer_token_file"),
                "",
                "a file path is required",
            ))
        }
        Some(path) => Some(resolve(path)),
        None => None,
    };
    let upstream_host = match raw.upstream_host {
        Some(host) => {
            let valid = host
                .parse::<http::uri::Authority>()
                .is_ok_and(|a| a.as_str() == host && !host.contains('@'));
            if !valid {
                return Err(invalid(
                    key("upstream_host"),
                    host,
                    "expected a host name, optionally with a port, such as \"auth.example.com\"",
                ));
            }
            Some(host)
        }
        None => None,
    };
    let name = match raw.name {
        Some(name) if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) => {
            return Err(invalid(key("name"), name, "must be non-empty, without spaces"))
        }
        Some(name) => name,
        None => format!("{}{}", public.host(), public.path()),
    };
    Ok(Issuer {
        name,
        public_url: raw.public_url,
        public,
        upstream,
        public_jwks_path,
        upstream_jwks_url: raw.upstream_jwks_url,
        upstream_ca,
        upstream_client_auth,
        upstream_bearer_token_file,
        upstream_host,
    })
}

/// Renders the effective configuration (defaults filled in) as TOML for `check-config`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        writeln!(f, "[server]")?;
        if let Some(listen) = self.server.listen {
            writeln!(f, "listen = \"{listen}\"")?;
        }
        if let Some(plain) = self.server.listen_plain {
            writeln!(f, "listen_plain = \"{plain}\"")?;
        }
        writeln!(f, "deadline = \"{}\"", dur(self.server.deadline))?;
        let l = &self.server.limits;
        writeln!(f, "max_connections = {}", l.max_connections)?;
        writeln!(f, "tls_handshake_timeout = \"{}\"", dur(l.tls_handshake_timeout))?;
        writeln!(f, "header_timeout = \"{}\"", dur(l.header_timeout))?;
        writeln!(f, "idle_timeout = \"{}\"", dur(l.idle_timeout))?;
        writeln!(f, "max_header_bytes = {}", l.max_header_bytes)?;
        writeln!(f, "max_concurrent_streams = {}", l.max_concurrent_streams)?;
        writeln!(f, "drain_timeout = \"{}\"", dur(l.drain_timeout))?;
        if let Some(tls) = &self.server.tls {
            writeln!(f, "\n[server.tls]")?;
            writeln!(f, "cert = {:?}", tls.certs[0].cert.display().to_string())?;
            writeln!(f, "key = {:?}", tls.certs[0].key.display().to_string())?;
            writeln!(f, "reload_interval = \"{}\"", dur(tls.reload_interval))?;
            for extra in &tls.certs[1..] {
                writeln!(f, "\n[[server.tls.certs]]")?;
                writeln!(f, "cert = {:?}", extra.cert.display().to_string())?;
                writeln!(f, "key = {:?}", extra.key.display().to_string())?;
            }
        }
        writeln!(f, "\n[admin]\nlisten = \"{}\"", self.admin.listen)?;
        if let Some(token) = &self.admin.token_file {
            writeln!(f, "token_file = {:?}", token.display().to_string())?;
        }
        writeln!(f, "\n[log]\naccess = {}", self.log.access)?;
        let c = &self.cache;
        writeln!(f, "\n[cache]")?;
        writeln!(f, "max_age = \"{}\"", dur(c.max_age))?;
        writeln!(f, "refresh = \"{}\"", dur(c.refresh))?;
        writeln!(f, "stale_if_error = \"{}\"", dur(c.stale_if_error))?;
        writeln!(f, "fetch_timeout = \"{}\"", dur(c.fetch_timeout))?;
        writeln!(f, "keep_removed_keys = \"{}\"", dur(c.keep_removed_keys))?;
        writeln!(f, "max_document_bytes = {}", c.max_document_bytes)?;
        if let Some(dir) = &c.state_dir {
            writeln!(f, "state_dir = {:?}", dir.display().to_string())?;
        }
        for issuer in &self.issuers {
            writeln!(f, "\n[[issuer]]")?;
            writeln!(f, "name = {:?}", issuer.name)?;
            writeln!(f, "public_url = {:?}", issuer.public_url)?;
            writeln!(f, "upstream = \"{}\"", issuer.upstream)?;
            writeln!(
                f,
                "# discovery served at {}",
                issuer.public.join("/.well-known/openid-configuration")
            )?;
            if let Some(path) = &issuer.public_jwks_path {
                writeln!(f, "public_jwks_path = {path:?}")?;
            }
            if let Some(url) = &issuer.upstream_jwks_url {
                writeln!(f, "upstream_jwks_url = {url:?}")?;
            }
            if let Some(ca) = &issuer.upstream_ca {
                writeln!(f, "upstream_ca = {:?}", ca.display().to_string())?;
            }
            if let Some(auth) = &issuer.upstream_client_auth {
                writeln!(f, "upstream_client_cert = {:?}", auth.cert.display().to_string())?;
                writeln!(f, "upstream_client_key = {:?}", auth.key.display().to_string())?;
            }
            if let Some(token) = &issuer.upstream_bearer_token_file {
                writeln!(f, "upstream_bearer_token_file = {:?}", token.display().to_string())?;
            }
            if let Some(host) = &issuer.upstream_host {
                writeln!(f, "upstream_host = {host:?}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
