//! The value parsers every section shares: addresses, durations, counts, each bounded.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};

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

pub(super) fn at_most_max(key: &str, value: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration > MAX_DURATION {
        return Err(invalid(key, value, "must be at most 3650d (ten years)"));
    }
    Ok(duration)
}

pub(super) fn parse_count(
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
