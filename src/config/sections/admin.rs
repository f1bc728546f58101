//! `[admin]`: the admin listener, its token and what readiness requires.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::raw::RawAdmin;
use crate::config::sections::values::{parse_addr, parse_duration};
use crate::config::settings::{Admin, Readiness};

/// Longest `admin.startup_grace`: past it, a pod that can serve some issuers would be
/// kept out of service for one that cannot.
const MAX_STARTUP_GRACE: Duration = Duration::from_secs(600);

pub(in crate::config) fn validate_admin(
    raw: RawAdmin,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Admin, ConfigError> {
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
