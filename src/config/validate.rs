//! Validation: each raw section checked and turned into its typed form.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::keys::KeyCap;
use crate::config::keys::{KeyPolicy, PublishKeys};
use crate::config::limits::{Limits, PUBLIC_CONNECTION_BUDGET};
use crate::config::raw::{RawAcme, RawAdmin, RawCache, RawIssuer, RawServer, RawTls};
use crate::config::settings::{
    Acme, AcmeChallenge, Admin, Cache, Issuer, Readiness, Server, ServerTls, Tls, LETS_ENCRYPT,
};
use crate::model::base_url::BaseUrl;

/// AWS STS gives up on a discovery or key fetch after about this long.
const STS_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            value,
            "expected an IP address and port such as \"0.0.0.0:8443\" or \"[::]:8443\"",
        )
    })
}

pub(super) fn parse_duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    let duration = humantime::parse_duration(value)
        .map_err(|_| invalid(key, value, "expected a duration such as \"2s\", \"5m\" or \"24h\""))?;
    if duration.is_zero() {
        return Err(invalid(key, value, "must be greater than zero"));
    }
    at_most_max(key, value, duration)
}

/// No duration in the file may exceed this: deadlines are added to clocks and periods
/// to one another, which must never overflow, whatever the file says.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

fn at_most_max(key: &str, value: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration > MAX_DURATION {
        return Err(invalid(key, value, "must be at most 3650d (ten years)"));
    }
    Ok(duration)
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

pub(super) fn validate_server(raw: RawServer, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Server, ConfigError> {
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
    let tls = raw
        .tls
        .map(|tls| validate_tls(tls, listen_plain.is_some(), resolve))
        .transpose()?;
    let listen =
        match (&tls, raw.listen.as_deref()) {
            (Some(_), value) => Some(parse_addr("server.listen", value.unwrap_or("0.0.0.0:8443"))?),
            (None, Some(value)) => return Err(invalid(
                "server.listen",
                value,
                "the HTTPS listener needs [server.tls] (cert and key, or acme); use server.listen_plain for plain HTTP",
            )),
            (None, None) => None,
        };
    if listen.is_none() && listen_plain.is_none() {
        return Err(ConfigError::Missing {
            key: "server".into(),
            reason: "no listener: set [server.tls] (cert and key, or acme) for HTTPS, or server.listen_plain".into(),
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
    // The default budget is shared by the public listeners, so that together they stay
    // within the shipped memory limit.
    let public_listeners = usize::from(listen.is_some()) + usize::from(listen_plain.is_some());
    let max_connections = parse_count(
        "server.max_connections",
        raw.max_connections,
        PUBLIC_CONNECTION_BUDGET / public_listeners.max(1),
        1..=1_000_000,
    )?;
    let max_connections_per_address = match raw.max_connections_per_address {
        // Half the listener: one address never takes it all, and a load balancer that
        // connects from two addresses still gets every connection.
        None => (max_connections / 2).max(1),
        Some(value) => parse_count(
            "server.max_connections_per_address",
            Some(value),
            0,
            1..=max_connections,
        )
        .map_err(|err| match err {
            ConfigError::Invalid { key, value, .. } => invalid(
                key,
                value,
                format!("must be between 1 and server.max_connections ({max_connections})"),
            ),
            other => other,
        })?,
    };
    let limits = Limits {
        max_connections,
        max_connections_per_address,
        tls_handshake_timeout: parse_duration(
            "server.tls_handshake_timeout",
            raw.tls_handshake_timeout.as_deref(),
            "10s",
        )?,
        header_timeout: parse_duration("server.header_timeout", raw.header_timeout.as_deref(), "10s")?,
        idle_timeout: parse_duration("server.idle_timeout", raw.idle_timeout.as_deref(), "60s")?,
        send_timeout: parse_duration("server.send_timeout", raw.send_timeout.as_deref(), "10s")?,
        send_buffer_bytes: match raw.send_buffer_bytes {
            Some(0) => 0,
            value => parse_count(
                "server.send_buffer_bytes",
                value,
                defaults.send_buffer_bytes,
                4096..=16 * 1024 * 1024,
            )
            .map_err(|err| match err {
                ConfigError::Invalid { key, value, .. } => invalid(
                    key,
                    value,
                    "must be 0 (the kernel's autotuning) or between 4096 and 16777216 (16 MiB)",
                ),
                other => other,
            })?,
        },
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

fn validate_tls(tls: RawTls, has_plain: bool, resolve: &dyn Fn(&str) -> PathBuf) -> Result<ServerTls, ConfigError> {
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
    let reload_interval = parse_duration("server.tls.reload_interval", tls.reload_interval.as_deref(), "10s")?;
    if reload_interval < Duration::from_millis(100) {
        return Err(invalid(
            "server.tls.reload_interval",
            tls.reload_interval.unwrap_or_default(),
            "must be at least 100ms",
        ));
    }
    if let Some(acme) = tls.acme {
        // Files and ACME in one listener would make the certificate served for a name
        // depend on which source answered last; one source, stated plainly.
        let files = [("server.tls.cert", tls.cert), ("server.tls.key", tls.key)];
        if let Some((key, Some(value))) = files.into_iter().find(|(_, v)| v.is_some()) {
            return Err(invalid(key, value, "cannot be combined with [server.tls.acme]"));
        }
        if !tls.certs.is_empty() {
            return Err(ConfigError::Missing {
                key: "server.tls.certs".into(),
                reason: "cannot be combined with [server.tls.acme]".into(),
            });
        }
        return Ok(ServerTls {
            certs: Vec::new(),
            reload_interval,
            acme: Some(validate_acme(acme, has_plain, resolve)?),
        });
    }
    let (cert, key) = match (tls.cert, tls.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => {
            return Err(ConfigError::Missing {
                key: "server.tls.cert".into(),
                reason: "a certificate file is required (or [server.tls.acme] to obtain one)".into(),
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                key: "server.tls.key".into(),
                reason: "the certificate's private key file is required".into(),
            })
        }
    };
    let mut certs = vec![pair("server.tls", &cert, &key)?];
    for (i, extra) in tls.certs.iter().enumerate() {
        certs.push(pair(&format!("server.tls.certs[{i}]"), &extra.cert, &extra.key)?);
    }
    Ok(ServerTls {
        certs,
        reload_interval,
        acme: None,
    })
}

fn validate_acme(raw: RawAcme, has_plain: bool, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Acme, ConfigError> {
    let directory = raw.directory.unwrap_or_else(|| LETS_ENCRYPT.to_owned());
    match BaseUrl::parse(&directory) {
        Ok(url) if url.is_https() => {}
        _ => {
            return Err(invalid(
                "server.tls.acme.directory",
                directory,
                "expected the https:// URL of an ACME directory",
            ))
        }
    }
    let mut contact = Vec::new();
    for (i, email) in raw.contact.unwrap_or_default().into_iter().enumerate() {
        let address = email.strip_prefix("mailto:").unwrap_or(&email);
        let valid = address
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !address.contains([' ', ',']));
        if !valid {
            return Err(invalid(
                format!("server.tls.acme.contact[{i}]"),
                &email,
                "expected an e-mail address such as \"ops@example.com\"",
            ));
        }
        contact.push(format!("mailto:{address}"));
    }
    let mut domains = Vec::new();
    for (i, domain) in raw.domains.unwrap_or_default().into_iter().enumerate() {
        let key = format!("server.tls.acme.domains[{i}]");
        let name = acme_domain(&key, &domain)?;
        if domains.contains(&name) {
            return Err(invalid(key, domain, "is listed twice"));
        }
        domains.push(name);
    }
    let cache_dir = match raw.cache_dir.as_deref() {
        Some("") | None => {
            return Err(ConfigError::Missing {
                key: "server.tls.acme.cache_dir".into(),
                reason: "a directory that survives restarts is required: without it every start orders a new \
                         certificate, and Let's Encrypt allows 5 per week for the same names"
                    .into(),
            })
        }
        Some(dir) => resolve(dir),
    };
    let directory_ca = match raw.directory_ca.as_deref() {
        Some("") => return Err(invalid("server.tls.acme.directory_ca", "", "a file path is required")),
        Some(path) => Some(resolve(path)),
        None => None,
    };
    let challenge = match raw.challenge.as_deref() {
        None | Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some("http-01") => AcmeChallenge::Http01,
        Some(other) => {
            return Err(invalid(
                "server.tls.acme.challenge",
                other,
                "expected \"tls-alpn-01\" (on the HTTPS listener) or \"http-01\" (on server.listen_plain)",
            ))
        }
    };
    if challenge == AcmeChallenge::Http01 && !has_plain {
        return Err(invalid(
            "server.tls.acme.challenge",
            "http-01",
            "needs server.listen_plain (the CA connects to port 80 of each domain)",
        ));
    }
    let renew_before = raw
        .renew_before
        .as_deref()
        .map(|value| parse_duration("server.tls.acme.renew_before", Some(value), ""))
        .transpose()?;
    Ok(Acme {
        directory,
        contact,
        domains,
        cache_dir,
        directory_ca,
        challenge,
        one_per_domain: raw.one_per_domain.unwrap_or(false),
        renew_before,
    })
}

/// A DNS name a CA can validate with HTTP-01 or TLS-ALPN-01: no wildcard, no IP address.
fn acme_domain(key: &str, value: &str) -> Result<String, ConfigError> {
    let name = value.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(invalid(
            key,
            value,
            "wildcard names need the DNS-01 challenge, which jwks-edge does not answer",
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid(
            key,
            value,
            "an IP address; ACME certificates here are for DNS names",
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.contains('.') || !name.split('.').all(label_ok) {
        return Err(invalid(
            key,
            value,
            "expected a fully qualified DNS name such as \"auth.example.com\"",
        ));
    }
    Ok(name)
}

/// Without `domains`, the certificate names every issuer's public host.
pub(super) fn default_acme_domains(acme: &mut Acme, issuers: &[Issuer]) -> Result<(), ConfigError> {
    if !acme.domains.is_empty() {
        return Ok(());
    }
    for (i, issuer) in issuers.iter().enumerate() {
        let name = acme_domain(&format!("issuer[{i}].public_url"), issuer.public.host()).map_err(|err| match err {
            ConfigError::Invalid { key, reason, .. } => ConfigError::Invalid {
                key,
                value: issuer.public_url.clone(),
                reason: format!("{reason} (set server.tls.acme.domains to choose the names)"),
            },
            other => other,
        })?;
        if !acme.domains.contains(&name) {
            acme.domains.push(name);
        }
    }
    Ok(())
}

/// Longest `admin.startup_grace`: past it, a pod that can serve some issuers would be
/// kept out of service for one that cannot.
const MAX_STARTUP_GRACE: Duration = Duration::from_secs(600);

pub(super) fn validate_admin(raw: RawAdmin, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Admin, ConfigError> {
    let readiness = match raw.readiness.as_deref() {
        None | Some("any") => Readiness::Any,
        Some("all") => Readiness::All,
        Some(other) => {
            return Err(invalid(
                "admin.readiness",
                other,
                "expected \"any\" (ready while some document can be served) or \"all\" (only while every one can)",
            ))
        }
    };
    let startup_grace = parse_duration("admin.startup_grace", raw.startup_grace.as_deref(), "30s")?;
    if startup_grace > MAX_STARTUP_GRACE {
        return Err(invalid(
            "admin.startup_grace",
            raw.startup_grace.unwrap_or_default(),
            "must be at most 10m",
        ));
    }
    Ok(Admin {
        listen: parse_addr("admin.listen", raw.listen.as_deref().unwrap_or("127.0.0.1:9090"))?,
        token_file: match raw.token_file.as_deref() {
            Some("") => return Err(invalid("admin.token_file", "", "a file path is required")),
            Some(path) => Some(resolve(path)),
            None => None,
        },
        readiness,
        startup_grace,
    })
}

pub(super) fn validate_cache(raw: RawCache, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Cache, ConfigError> {
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
        Some(value) => {
            let duration = humantime::parse_duration(value).map_err(|_| {
                invalid(
                    "cache.keep_removed_keys",
                    value,
                    "expected a duration such as \"0s\" (off), \"10m\" or \"24h\"",
                )
            })?;
            at_most_max("cache.keep_removed_keys", value, duration)?
        }
    };
    let revalidate_after = validate_revalidate_after(raw.revalidate_after.as_deref())?;
    let defaults = KeyCap::default();
    let key_cap = KeyCap {
        rsa: parse_count("cache.max_rsa_keys", raw.max_rsa_keys, defaults.rsa, 1..=MAX_KEYS)?,
        ec: parse_count("cache.max_ec_keys", raw.max_ec_keys, defaults.ec, 1..=MAX_KEYS)?,
        total: raw
            .max_keys
            .map(|n| parse_count("cache.max_keys", Some(n), 0, 1..=MAX_KEYS))
            .transpose()?,
    };
    Ok(Cache {
        max_age: parse_duration("cache.max_age", raw.max_age.as_deref(), "5m")?,
        refresh,
        stale_if_error,
        fetch_timeout,
        keep_removed_keys,
        revalidate_after,
        max_document_bytes,
        state_dir,
        key_cap,
    })
}

/// `cache.revalidate_after`: "0s" is off; otherwise at least 1s, because each interval
/// may cost the upstream one request per key set per replica.
fn validate_revalidate_after(value: Option<&str>) -> Result<Duration, ConfigError> {
    const KEY: &str = "cache.revalidate_after";
    let Some(value) = value else {
        return Ok(Duration::from_secs(5));
    };
    let duration = humantime::parse_duration(value)
        .map_err(|_| invalid(KEY, value, "expected a duration such as \"5s\", or \"0s\" (off)"))?;
    if !duration.is_zero() && duration < Duration::from_secs(1) {
        return Err(invalid(
            KEY,
            value,
            "must be at least 1s (each interval may cost the upstream one request per key set), or \"0s\" (off)",
        ));
    }
    at_most_max(KEY, value, duration)
}
/// Highest key cap accepted: far above what any relying party takes, low enough that a
/// typo (an extra zero or three) is caught.
const MAX_KEYS: usize = 10_000;

pub(super) fn validate_issuer(
    i: usize,
    raw: RawIssuer,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Issuer, ConfigError> {
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
        (Some(""), _) => return Err(invalid(key("upstream_client_cert"), "", "a file path is required")),
        (_, Some("")) => return Err(invalid(key("upstream_client_key"), "", "a file path is required")),
        (Some(cert), None) => {
            return Err(invalid(
                key("upstream_client_cert"),
                cert,
                "needs upstream_client_key as well",
            ))
        }
        (None, Some(key_file)) => {
            return Err(invalid(
                key("upstream_client_key"),
                key_file,
                "needs upstream_client_cert as well",
            ))
        }
        (Some(cert), Some(_)) if !any_https => {
            return Err(invalid(
                key("upstream_client_cert"),
                cert,
                "only applies to an https upstream",
            ))
        }
        (Some(cert), Some(key_file)) => Some(Tls {
            cert: resolve(cert),
            key: resolve(key_file),
        }),
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
    let upstream_bearer_token_over_http = raw.upstream_bearer_token_over_http.unwrap_or(false);
    let plain_http = !upstream.is_https() || upstream_jwks_https == Some(false);
    if let (Some(path), true, false) = (
        raw.upstream_bearer_token_file.as_deref(),
        plain_http,
        upstream_bearer_token_over_http,
    ) {
        let (url_key, url) = if upstream.is_https() {
            (
                key("upstream_jwks_url"),
                raw.upstream_jwks_url.as_deref().unwrap_or_default(),
            )
        } else {
            (key("upstream"), raw.upstream.as_str())
        };
        return Err(invalid(
            key("upstream_bearer_token_file"),
            path,
            format!(
                "the token would cross the network in clear text to {url_key} = {url:?}: use an https upstream, \
                 or set {} = true to accept that",
                key("upstream_bearer_token_over_http")
            ),
        ));
    }
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
    let mut withdrawn_kids: Vec<String> = Vec::new();
    for (j, kid) in raw.withdrawn_kids.unwrap_or_default().into_iter().enumerate() {
        let key = key(&format!("withdrawn_kids[{j}]"));
        if kid.is_empty() {
            return Err(invalid(key, kid, "a key id (`kid`) is required"));
        }
        if withdrawn_kids.contains(&kid) {
            return Err(invalid(key, kid, "is listed twice"));
        }
        withdrawn_kids.push(kid);
    }
    let publish = match raw.publish_keys.as_deref() {
        None | Some("all") => PublishKeys::All,
        Some("signing") => PublishKeys::Signing,
        Some(other) => {
            return Err(invalid(
                key("publish_keys"),
                other,
                "expected \"all\" (every key, the default) or \"signing\" (drop encryption keys, `use: enc`)",
            ))
        }
    };
    let key_policy = KeyPolicy {
        publish,
        fill_use: raw.fill_key_use.unwrap_or(false),
        fill_alg: raw.fill_key_alg.unwrap_or(false),
    };
    let prepublished_jwks_file = match raw.prepublished_jwks_file.as_deref() {
        Some("") => {
            return Err(invalid(
                key("prepublished_jwks_file"),
                "",
                "a JWKS file path is required",
            ))
        }
        Some(path) => Some(resolve(path)),
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
        upstream_bearer_token_over_http,
        withdrawn_kids,
        key_policy,
        prepublished_jwks_file,
    })
}
