//! How the doctor reaches a host: each name resolved once and pinned, and a connection
//! only to an address the `AddressPolicy` allows.
//!
//! The doctor is pointed at URLs it does not control, and follows a `jwks_uri` that a
//! remote document chose. So the address policy is enforced here, below every check,
//! rather than trusted to each caller: nothing connects without a `Resolver::route`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::address::{AddressPolicy, NonPublic};

/// `HOST:PORT:ADDR`, as curl's `--resolve`.
#[derive(Clone, Debug)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

/// Why a `--resolve` value is not `HOST:PORT:ADDR`; the command line prints it after the
/// value. The parse errors of the port and address are left out: the quoted part is the
/// whole story.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveOverrideError {
    #[error("expected HOST:PORT:ADDR")]
    Shape,
    #[error("{0:?} is not a port")]
    Port(String),
    #[error("{0:?} is not an IP address")]
    Addr(String),
}

impl std::str::FromStr for ResolveOverride {
    type Err = ResolveOverrideError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, rest) = s.split_once(':').ok_or(ResolveOverrideError::Shape)?;
        let (port, addr) = rest.split_once(':').ok_or(ResolveOverrideError::Shape)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port: port.parse().map_err(|_| ResolveOverrideError::Port(port.to_owned()))?,
            addr: addr.parse().map_err(|_| ResolveOverrideError::Addr(addr.to_owned()))?,
        })
    }
}

/// Why a host has no addresses. Cloned, because a failure is pinned like an answer.
///
/// Each message is the whole line the report prints, its cause's text included; the
/// cause is kept as `source` too, for code that wants the value. The report prints the
/// message alone, never the chain.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("resolving {host} took longer than {after:?}")]
    Timeout { host: String, after: Duration },
    #[error("{host} has no address")]
    NoAddress { host: String },
}

/// `io::Error` is not comparable: two lookup failures are equal when their hosts and
/// error kinds are.
impl PartialEq for ResolveError {
    fn eq(&self, other: &Self) -> bool {
        use ResolveError::*;
        match (self, other) {
            (Lookup { host: a, source: x }, Lookup { host: b, source: y }) => a == b && x.kind() == y.kind(),
            (Timeout { host: a, after: x }, Timeout { host: b, after: y }) => a == b && x == y,
            (NoAddress { host: a }, NoAddress { host: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for ResolveError {}

/// A connection the doctor will not make, or a name it cannot resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("refused to connect to {host} at {addr} ({class}) without --allow-private")]
    Refused {
        host: String,
        addr: IpAddr,
        class: NonPublic,
    },
}

/// How a host name becomes addresses.
enum Lookup {
    System,
    /// Successive answers, one per lookup: a name server that changes its mind.
    #[cfg(test)]
    Scripted(std::sync::Mutex<std::collections::VecDeque<Vec<IpAddr>>>),
}

/// Resolves each host once; every later connection to it uses the pinned answer, so a
/// name server cannot send the second connection (the same-host key set, a TLS probe)
/// somewhere the first did not go.
pub struct Resolver {
    overrides: Vec<ResolveOverride>,
    policy: AddressPolicy,
    timeout: Duration,
    lookup: Lookup,
    /// Every DNS answer (or failure) so far, by host. Written on a host's first lookup,
    /// read by every later one; the lock is held across that lookup so that two callers
    /// cannot both resolve.
    pinned: tokio::sync::Mutex<HashMap<String, Result<Vec<IpAddr>, ResolveError>>>,
}

fn bare(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

impl Resolver {
    pub fn new(overrides: Vec<ResolveOverride>, policy: AddressPolicy, timeout: Duration) -> Resolver {
        Resolver {
            overrides,
            policy,
            timeout,
            lookup: Lookup::System,
            pinned: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    #[cfg(test)]
    pub(super) fn scripted(answers: Vec<Vec<IpAddr>>, policy: AddressPolicy) -> Resolver {
        Resolver {
            lookup: Lookup::Scripted(std::sync::Mutex::new(answers.into())),
            ..Resolver::new(Vec::new(), policy, Duration::from_secs(1))
        }
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// The addresses of `host:port`: an override, the literal address, or the pinned DNS
    /// answer (looked up now if this is the host's first use).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        let host = bare(host);
        if let Some(o) = self.overrides.iter().find(|o| o.host == host && o.port == port) {
            return Ok(vec![o.addr]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut pinned = self.pinned.lock().await;
        if let Some(answer) = pinned.get(&host) {
            return answer.clone();
        }
        let answer = self.look_up(&host, port).await;
        pinned.insert(host, answer.clone());
        answer
    }

    async fn look_up(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        let addrs: Vec<IpAddr> = match &self.lookup {
            Lookup::System => {
                let lookup = tokio::net::lookup_host((host, port));
                match tokio::time::timeout(self.timeout, lookup).await {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                    Ok(Err(err)) => {
                        return Err(ResolveError::Lookup {
                            host: host.to_owned(),
                            source: Arc::new(err),
                        })
                    }
                    Err(_) => {
                        return Err(ResolveError::Timeout {
                            host: host.to_owned(),
                            after: self.timeout,
                        })
                    }
                }
            }
            #[cfg(test)]
            Lookup::Scripted(answers) => answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
                .unwrap_or_default(),
        };
        let mut unique = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !unique.contains(&addr) {
                unique.push(addr);
            }
        }
        if unique.is_empty() {
            Err(ResolveError::NoAddress { host: host.to_owned() })
        } else {
            Ok(unique)
        }
    }

    /// Where a connection to `host:port` goes: the first of its (pinned) addresses that
    /// the policy allows. Deterministic, so every connection to a host goes to one address.
    pub async fn route(&self, host: &str, port: u16) -> Result<SocketAddr, RouteError> {
        let addrs = self.resolve(host, port).await?;
        let mut first_refused = None;
        for addr in addrs {
            match self.policy.refusal(addr) {
                None => return Ok(SocketAddr::new(addr, port)),
                Some(class) => {
                    first_refused.get_or_insert((addr, class));
                }
            }
        }
        // `resolve` never answers an empty list; were it to, there is no address to name.
        let (addr, class) = first_refused.ok_or_else(|| ResolveError::NoAddress { host: bare(host) })?;
        Err(RouteError::Refused {
            host: bare(host),
            addr,
            class,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolve_overrides_parse() {
        let o: ResolveOverride = "Auth.Example.com:443:127.0.0.1".parse().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("auth.example.com", 443));
        let o: ResolveOverride = "a:8443:[::1]".parse().unwrap();
        assert_eq!(o.addr, ip("::1"));
        assert!("a:b:c".parse::<ResolveOverride>().is_err());
        assert!("a:443".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn a_bad_resolve_override_says_which_part_is_wrong() {
        let err = |s: &str| s.parse::<ResolveOverride>().unwrap_err();
        assert_eq!(err("a:443"), ResolveOverrideError::Shape);
        assert_eq!(err("a:b:c"), ResolveOverrideError::Port("b".into()));
        assert_eq!(err("a:443:[c]").to_string(), r#""c" is not an IP address"#);
    }

    #[tokio::test]
    async fn a_failed_lookup_is_pinned_like_an_answer() {
        let resolver = Resolver::scripted(
            vec![Vec::new(), vec![ip("127.0.0.1")]],
            AddressPolicy {
                allow_private: true,
                ..AddressPolicy::default()
            },
        );
        let gone = ResolveError::NoAddress {
            host: "gone.test".into(),
        };
        assert_eq!(resolver.resolve("gone.test", 443).await, Err(gone.clone()));
        let err = resolver.route("Gone.Test", 443).await.unwrap_err();
        assert_eq!(err.to_string(), "gone.test has no address");
        assert_eq!(err, RouteError::Resolve(gone));
    }

    #[tokio::test]
    async fn a_host_is_looked_up_once_and_its_answer_kept() {
        let resolver = Resolver::scripted(
            vec![vec![ip("127.0.0.1")], vec![ip("127.0.0.2")]],
            AddressPolicy {
                allow_private: true,
                ..AddressPolicy::default()
            },
        );
        for _ in 0..3 {
            assert_eq!(
                resolver.route("Idp.Test", 443).await.unwrap(),
                "127.0.0.1:443".parse().unwrap()
            );
        }
        // Another port of the same host: still the first answer.
        assert_eq!(resolver.resolve("idp.test", 8443).await.unwrap(), vec![ip("127.0.0.1")]);
    }

    #[tokio::test]
    async fn private_addresses_are_refused_and_public_ones_preferred() {
        let policy = AddressPolicy {
            allow_private: false,
            assume_public: vec![ip("127.0.0.9")],
        };
        let resolver = Resolver::scripted(
            vec![
                vec![ip("10.0.0.1"), ip("::ffff:192.168.0.1")],
                vec![ip("10.0.0.1"), ip("127.0.0.9")],
            ],
            policy,
        );
        assert_eq!(
            resolver.route("internal.test", 443).await,
            Err(RouteError::Refused {
                host: "internal.test".into(),
                addr: ip("10.0.0.1"),
                class: NonPublic::Private,
            })
        );
        assert_eq!(
            resolver.route("mixed.test", 443).await.unwrap(),
            "127.0.0.9:443".parse().unwrap()
        );
        let err = resolver.route("169.254.169.254", 80).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused to connect to 169.254.169.254 at 169.254.169.254 (link-local) without --allow-private"
        );
    }
}
