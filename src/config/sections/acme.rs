//! `[server.tls.acme]`: the CA, the account and the DNS names its certificates are for.

use std::path::PathBuf;

use crate::config::error::{invalid, ConfigError};
use crate::config::raw::RawAcme;
use crate::config::sections::values::parse_duration;
use crate::config::settings::{Acme, AcmeChallenge, Issuer, LETS_ENCRYPT};
use crate::model::base_url::BaseUrl;

pub(super) fn validate_acme(
    raw: RawAcme,
    has_plain: bool,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Acme, ConfigError> {
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
pub(in crate::config) fn default_acme_domains(acme: &mut Acme, issuers: &[Issuer]) -> Result<(), ConfigError> {
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
