//! The config texts and the loader every config test starts from.

use std::path::Path;

use crate::config::error::ConfigError;
use crate::config::settings::Config;

pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/jwks-edge"))
}

pub(super) const MINIMAL: &str = r#"
[server]
listen_plain = "127.0.0.1:8080"

[[issuer]]
public_url = "https://gitlab.example.com"
upstream = "http://gitlab.internal:8080"
"#;

pub(super) fn with(extra_server: &str, extra_cache: &str, issuer: &str) -> String {
    format!(
        "[server]\nlisten_plain = \"127.0.0.1:8080\"\n{extra_server}\n[cache]\n{extra_cache}\n[[issuer]]\n{issuer}\n"
    )
}

pub(super) const ISSUER: &str =
    "public_url = \"https://gitlab.example.com\"\nupstream = \"http://gitlab.internal:8080\"";

pub(super) fn error_of(text: &str) -> String {
    let err = load(text).expect_err("config should be rejected");
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
