//! `[cache]`: freshness periods, document size, the state directory and the key caps.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::keys::KeyCap;
use crate::config::raw::RawCache;
use crate::config::sections::values::{at_most_max, parse_count, parse_duration};
use crate::config::settings::Cache;

pub(in crate::config) fn validate_cache(
    raw: RawCache,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Cache, ConfigError> {
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
        max_fetches_per_upstream: parse_count(
            "cache.max_fetches_per_upstream",
            raw.max_fetches_per_upstream,
            DEFAULT_FETCHES_PER_UPSTREAM,
            1..=MAX_FETCHES_PER_UPSTREAM,
        )?,
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
/// Fetches in flight at once per upstream authority: enough to fill a fleet's documents
/// quickly, few enough for any IdP's listen backlog and worker pool.
const DEFAULT_FETCHES_PER_UPSTREAM: usize = 8;
/// Beyond this the bound no longer protects an upstream; a typo is likelier.
const MAX_FETCHES_PER_UPSTREAM: usize = 1024;

/// Highest key cap accepted: far above what any relying party takes, low enough that a
/// typo (an extra zero or three) is caught.
const MAX_KEYS: usize = 10_000;
