//! The open-file limit: raised to its hard limit at start, and checked against what the
//! connection limits need.
//!
//! Every connection is a file descriptor. Below `max_connections` descriptors, `accept`
//! fails with EMFILE under load and the configured limit is a promise the process cannot
//! keep; `serve` refuses to start instead (exit 2), saying which knob to turn.

use crate::config::limits::ADMIN_MAX_CONNECTIONS;
use crate::config::Config;
use crate::upstream::fetch::IDLE_PER_AUTHORITY;
use crate::upstream::permits::authority;
use std::collections::{HashMap, HashSet};

/// Descriptors besides client connections: listeners, the log, snapshot and certificate
/// files, the runtime's own.
pub const RESERVED: u64 = 64;

/// The process's RLIMIT_NOFILE; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What the configuration needs, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdNeed {
    pub max_connections: usize,
    pub public_listeners: usize,
    pub admin: usize,
    pub reserved: u64,
}

impl FdNeed {
    pub fn of(config: &Config) -> FdNeed {
        let limits = &config.server.limits;
        let public_listeners =
            usize::from(config.server.listen.is_some()) + usize::from(config.server.listen_plain.is_some());
        FdNeed {
            max_connections: limits.max_connections,
            public_listeners,
            admin: limits.max_connections.min(ADMIN_MAX_CONNECTIONS),
            reserved: RESERVED + upstream_connections(config),
        }
    }

    pub fn total(&self) -> u64 {
        (self.max_connections * self.public_listeners + self.admin) as u64 + self.reserved
    }
}

/// Upstream connections open at once, at most: per upstream authority, the fetches
/// `cache.max_fetches_per_upstream` lets run, plus the idle connections each client (one
/// per trust setting) keeps to it. It grows with distinct upstreams, not with issuers: a
/// thousand realms of one Keycloak need ten, not four thousand.
pub fn upstream_connections(config: &Config) -> u64 {
    let mut clients_by_authority: HashMap<String, HashSet<_>> = HashMap::new();
    for issuer in &config.issuers {
        // The client key of `app.rs`: one client per CA and client certificate.
        let client = (
            issuer.upstream_ca.as_deref(),
            issuer
                .upstream_client_auth
                .as_ref()
                .map(|t| (t.cert.as_path(), t.key.as_path())),
        );
        // A key set URL that the discovery document names on another host is not known
        // before the first fetch; it falls in the same bound once known, and RESERVED
        // absorbs the few such hosts.
        let urls = std::iter::once(issuer.upstream_discovery_url()).chain(issuer.upstream_jwks_url.clone());
        for url in urls {
            if let Ok(uri) = url.parse::<http::Uri>() {
                clients_by_authority.entry(authority(&uri)).or_default().insert(client);
            }
        }
    }
    let in_flight = config.cache.max_fetches_per_upstream as u64;
    clients_by_authority
        .values()
        .map(|clients| in_flight + IDLE_PER_AUTHORITY as u64 * clients.len() as u64)
        .sum()
}

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error(
        "the open-file limit (RLIMIT_NOFILE) is {soft} (hard limit {hard}), but the connection limits need {total}: \
         server.max_connections = {max} on {listeners} public listener(s), {admin} on the admin listener, and {reserved} \
         for upstream connections and files; raise the hard limit (systemd LimitNOFILE=, docker run --ulimit \
         nofile=N:N, ulimit -Hn) or lower server.max_connections",
        soft = show(.limit.soft),
        hard = show(.limit.hard),
        total = .need.total(),
        max = .need.max_connections,
        listeners = .need.public_listeners,
        admin = .need.admin,
        reserved = .need.reserved
    )]
    TooLow { limit: FdLimit, need: FdNeed },
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// Whether `limit` leaves room for `need`.
pub fn check(limit: FdLimit, need: FdNeed) -> Result<(), FdLimitError> {
    match limit.soft {
        Some(soft) if soft < need.total() => Err(FdLimitError::TooLow { limit, need }),
        _ => Ok(()),
    }
}

/// The current limit.
pub fn current() -> FdLimit {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    FdLimit {
        soft: limit.current,
        hard: limit.maximum,
    }
}

/// Raises the soft limit to the hard limit (anyone may, up to the hard limit) and returns
/// the limit in force afterwards, with the error if raising failed.
pub fn raise() -> (FdLimit, Option<std::io::Error>) {
    let before = current();
    if before.soft == before.hard {
        return (before, None);
    }
    let raised = rustix::process::Rlimit {
        current: before.hard,
        maximum: before.hard,
    };
    match rustix::process::setrlimit(rustix::process::Resource::Nofile, raised) {
        Ok(()) => (current(), None),
        Err(err) => (before, Some(err.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need() -> FdNeed {
        FdNeed {
            max_connections: 1000,
            public_listeners: 2,
            admin: 64,
            reserved: 72,
        }
    }

    #[test]
    fn the_need_counts_every_listener_and_the_reserve() {
        assert_eq!(need().total(), 2136);
        let ok = FdLimit {
            soft: Some(2136),
            hard: Some(4096),
        };
        assert!(check(ok, need()).is_ok());
        assert!(check(FdLimit { soft: None, hard: None }, need()).is_ok());
    }

    #[test]
    fn too_low_a_limit_says_what_is_needed_and_which_knob_to_turn() {
        let low = FdLimit {
            soft: Some(1024),
            hard: Some(1024),
        };
        let msg = check(low, need()).unwrap_err().to_string();
        for part in [
            "is 1024 (hard limit 1024)",
            "need 2136",
            "server.max_connections = 1000 on 2 public listener(s)",
            "LimitNOFILE",
        ] {
            assert!(msg.contains(part), "{part:?} in {msg:?}");
        }
    }

    fn fleet(issuers: &str) -> Config {
        let text = format!("[server]\nlisten_plain = \"127.0.0.1:8080\"\n{issuers}");
        Config::from_toml(&text, std::path::Path::new("/etc/jwks-edge")).unwrap()
    }

    fn issuer(n: usize, upstream: &str, extra: &str) -> String {
        format!("[[issuer]]\npublic_url = \"https://i{n}.example.test\"\nupstream = \"{upstream}\"\n{extra}\n")
    }

    #[test]
    fn upstream_connections_grow_with_upstreams_not_with_issuers() {
        let one_idp: String = (0..1000)
            .map(|n| issuer(n, &format!("http://idp:8080/realms/r{n}"), ""))
            .collect();
        // max_fetches_per_upstream (8) in flight, two idle for the one client.
        assert_eq!(upstream_connections(&fleet(&one_idp)), 10);
        let two_idps = issuer(0, "http://idp-a:8080", "") + &issuer(1, "https://idp-b", "");
        assert_eq!(upstream_connections(&fleet(&two_idps)), 20);
        // A key set host of its own adds what it can hold open; so does a second trust
        // setting on one authority, with idle connections of its own.
        let mixed = issuer(0, "http://idp:8080", "upstream_jwks_url = \"http://keys:9000/jwks\"")
            + &issuer(1, "http://IDP:8080/other", "")
            + &issuer(2, "https://idp:9443/x", "upstream_ca = \"ca.pem\"")
            + &issuer(3, "https://idp:9443/y", "");
        assert_eq!(upstream_connections(&fleet(&mixed)), (8 + 2) + (8 + 2) + (8 + 2 * 2));
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = current();
        let (after, _) = raise();
        assert!(after.soft >= before.soft || after.soft.is_none());
        assert_eq!(after.hard, before.hard);
    }
}
