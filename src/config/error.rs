//! `ConfigError`: what is wrong with a config file, naming the key and quoting the value.

use std::path::PathBuf;

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

pub(super) fn invalid(key: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}
