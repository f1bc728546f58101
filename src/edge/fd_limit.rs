//! The open-file limit: raised to its hard limit at start, and checked against what the
//! connection limits need.
//!
//! Every connection is a file descriptor. Below `max_connections` descriptors, `accept`
//! fails with EMFILE under load and the configured limit is a promise the process cannot
//! keep; `serve` refuses to start instead (exit 2), saying which knob to turn.

use crate::config::limits::ADMIN_MAX_CONNECTIONS;
use crate::config::Config;

/// Descriptors besides client connections: listeners, the log, snapshot and certificate
/// files, the runtime's own.
pub const RESERVED: u64 = 64;
/// Descriptors per issuer: pooled upstream connections of its fetcher.
pub const PER_ISSUER: u64 = 4;

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
            reserved: RESERVED + PER_ISSUER * config.issuers.len() as u64,
        }
    }

    pub fn total(&self) -> u64 {
        (self.max_connections * self.public_listeners + self.admin) as u64 + self.reserved
    }
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

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = current();
        let (after, _) = raise();
        assert!(after.soft >= before.soft || after.soft.is_none());
        assert_eq!(after.hard, before.hard);
    }
}
