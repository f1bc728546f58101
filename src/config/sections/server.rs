//! `[server]`: the listeners, the deadline and the connection limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::limits::{Limits, PUBLIC_CONNECTION_BUDGET};
use crate::config::raw::RawServer;
use crate::config::sections::tls::validate_tls;
use crate::config::sections::values::{parse_addr, parse_count, parse_duration};
use crate::config::settings::Server;

/// AWS STS gives up on a discovery or key fetch after about this long.
const STS_TIMEOUT: Duration = Duration::from_secs(5);

pub(in crate::config) fn validate_server(
    raw: RawServer,
    publishes: bool,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Server, ConfigError> {
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
    // A config that only publishes to object storage needs no inbound port.
    if listen.is_none() && listen_plain.is_none() && !publishes {
        return Err(ConfigError::Missing {
            key: "server".into(),
            reason: "no listener: set [server.tls] (cert and key, or acme) for HTTPS, or server.listen_plain \
                     (or publish to object storage with [[publish]])"
                .into(),
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
