//! `[[issuer]]`: one issuer's public URL, its upstream and how to reach it, and its key policy.

use std::path::PathBuf;

use crate::config::error::{invalid, ConfigError};
use crate::config::keys::{KeyPolicy, PublishKeys};
use crate::config::raw::RawIssuer;
use crate::config::settings::{Issuer, Tls};
use crate::model::base_url::BaseUrl;

pub(in crate::config) fn validate_issuer(
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
