//! `[server.tls]`: the HTTPS listener's certificate files, or ACME instead of them.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::raw::RawTls;
use crate::config::sections::acme::validate_acme;
use crate::config::sections::values::parse_duration;
use crate::config::settings::{ServerTls, Tls};

pub(super) fn validate_tls(
    tls: RawTls,
    has_plain: bool,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ServerTls, ConfigError> {
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
