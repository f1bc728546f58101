//! Loading: the file read, parsed into its raw mirror, each section validated, and the
//! issuers checked against one another.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::collisions::{validate_objects, validate_routes};
use crate::config::error::{invalid, ConfigError};
use crate::config::raw::RawConfig;
use crate::config::sections::acme::default_acme_domains;
use crate::config::sections::admin::validate_admin;
use crate::config::sections::cache::validate_cache;
use crate::config::sections::issuer::validate_issuer;
use crate::config::sections::publish::validate_publish;
use crate::config::sections::server::validate_server;
use crate::config::settings::{Config, Log};

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
        let mut server = validate_server(raw.server, !raw.publish.is_empty(), &resolve)?;
        let admin = validate_admin(raw.admin, &resolve)?;
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
        validate_routes(&issuers)?;
        let publish = raw
            .publish
            .into_iter()
            .enumerate()
            .map(|(i, raw)| validate_publish(i, raw, &issuers))
            .collect::<Result<Vec<_>, _>>()?;
        validate_objects(&publish, &issuers)?;
        if let Some(acme) = server.tls.as_mut().and_then(|t| t.acme.as_mut()) {
            default_acme_domains(acme, &issuers)?;
        }
        Ok(Config {
            server,
            admin,
            cache,
            log,
            issuers,
            publish,
        })
    }
}
