//! Routing: a table from a request's host and exact path to one configured document,
//! published whole by the refreshers and read by requests with one lookup.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foldhash::{HashMap, HashMapExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Issuer;
use crate::model::jwks_target::JwksTarget;
use crate::model::DocId;

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Doc(DocId),
    /// The path is under this issuer's public base, and the issuer's key set path is not
    /// known until its first discovery document arrives.
    Pending(usize),
    NotFound,
}

/// What the config fixes about one issuer's routes.
#[derive(Debug)]
struct IssuerRoute {
    index: usize,
    name: String,
    host: String,
    base_path: String,
    discovery_path: String,
    /// `public_jwks_path` from the config; otherwise learned from the discovery document.
    fixed_jwks_path: Option<String>,
}

/// The routes of one host.
#[derive(Debug, Default)]
struct HostRoutes {
    /// Every discovery path and every known key set path on the host.
    paths: HashMap<String, DocId>,
    /// The issuers on the host whose key set path is not known yet, in config order, with
    /// their public base path.
    pending: Vec<(String, usize)>,
    /// Each issuer on the host and its key set path in this table (configured, learned, or
    /// `None` while not known), in config order.
    jwks_paths: Vec<(usize, Option<String>)>,
}

impl HostRoutes {
    /// The routes of the issuers `on_host` (config order), given each one's key set path.
    /// Discovery paths first: they are fixed by the config and cannot be shadowed by a
    /// key set path some upstream advertises. Within each kind the first issuer in the
    /// config wins.
    fn build(on_host: &[&IssuerRoute], jwks_path: impl Fn(usize) -> Option<String>) -> HostRoutes {
        let mut host = HostRoutes::default();
        for r in on_host {
            host.paths
                .entry(r.discovery_path.clone())
                .or_insert(DocId::discovery(r.index));
        }
        for r in on_host {
            let path = jwks_path(r.index);
            match &path {
                Some(path) => {
                    host.paths.entry(path.clone()).or_insert(DocId::jwks(r.index));
                }
                None => host.pending.push((r.base_path.clone(), r.index)),
            }
            host.jwks_paths.push((r.index, path));
        }
        host
    }

    fn jwks_path(&self, index: usize) -> Option<&str> {
        self.jwks_paths
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, path)| path.as_deref())
    }
}

/// One routing table: a value, never changed once published. Routes by host (port
/// ignored, case-insensitive) then exact path. Hosts are shared between successive tables,
/// so a claim rebuilds only its own host's routes.
#[derive(Debug)]
pub struct RouteTable {
    hosts: HashMap<Arc<str>, Arc<HostRoutes>>,
    /// Each issuer's host, by issuer index (shared by every table of one router).
    host_of: Arc<[Arc<str>]>,
}

impl RouteTable {
    /// `host` is the request's host (with or without port); `path` its exact path.
    pub fn route(&self, host: &str, path: &str) -> Route {
        let Some(host) = normalize_host(host) else {
            return Route::NotFound;
        };
        let Some(routes) = self.hosts.get(host.as_ref()) else {
            return Route::NotFound;
        };
        if let Some(&id) = routes.paths.get(path) {
            return Route::Doc(id);
        }
        routes
            .pending
            .iter()
            .find(|(base, _)| is_under(path, base))
            .map_or(Route::NotFound, |&(_, index)| Route::Pending(index))
    }

    /// The key set path issuer `index` publishes at in this table, if known.
    pub fn jwks_path(&self, index: usize) -> Option<&str> {
        self.hosts.get(self.host_of.get(index)?)?.jwks_path(index)
    }
}

/// The routing table in force, and the way refreshers replace it.
///
/// Concurrency contract: requests only read the current table, without locking. The
/// discovery refreshers (and the snapshot restore before them) are the only writers: each
/// checks the key set path its issuer's document names against the current table and
/// publishes a new table whole, both under `writer`, so two issuers cannot both claim one
/// path at the same moment.
#[derive(Debug)]
pub struct Router {
    issuers: Vec<IssuerRoute>,
    /// The issuers of each host, in config order.
    on_host: HashMap<Arc<str>, Vec<usize>>,
    table: ArcSwap<RouteTable>,
    /// Bumped after every publication, to wake requests waiting for a key set path.
    published: watch::Sender<u64>,
    /// Held by a refresher while it checks and publishes. Never taken on the request path.
    writer: Mutex<()>,
}

impl Router {
    pub fn new(issuers: &[Issuer]) -> Router {
        let issuers: Vec<IssuerRoute> = issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| IssuerRoute {
                index,
                name: issuer.name.clone(),
                host: issuer.public.host().to_owned(),
                base_path: issuer.public.path().to_owned(),
                discovery_path: issuer.discovery_path(),
                fixed_jwks_path: issuer.public_jwks_path.clone(),
            })
            .collect();
        let host_of: Arc<[Arc<str>]> = issuers.iter().map(|r| Arc::<str>::from(r.host.as_str())).collect();
        let mut on_host: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        for r in &issuers {
            on_host.entry(host_of[r.index].clone()).or_default().push(r.index);
        }
        let hosts = on_host
            .iter()
            .map(|(host, members)| {
                let members: Vec<&IssuerRoute> = members.iter().map(|&i| &issuers[i]).collect();
                let routes = HostRoutes::build(&members, |i| issuers[i].fixed_jwks_path.clone());
                (host.clone(), Arc::new(routes))
            })
            .collect();
        let table = RouteTable { hosts, host_of };
        Router {
            issuers,
            on_host,
            table: ArcSwap::from_pointee(table),
            published: watch::Sender::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The table in force now.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Routes one request in the table in force now.
    pub fn route(&self, host: &str, path: &str) -> Route {
        self.table.load().route(host, path)
    }

    /// The first table that knows issuer `index`'s key set path, or the one in force at
    /// `deadline`: what a request routed `Pending` waits for on a cold start.
    pub async fn learned(&self, index: usize, deadline: Instant) -> Arc<RouteTable> {
        // Subscribe before looking, so that a table published in between is not missed.
        let mut published = self.published.subscribe();
        loop {
            let table = self.table.load_full();
            if table.jwks_path(index).is_some() {
                return table;
            }
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.table.load_full(),
            }
        }
    }

    /// Why issuer `index` may not publish its key set at `path`, if it may not: the path
    /// is a discovery path or another issuer's key set path on the same host, or it lies
    /// under another issuer's longer public base there, where it would take that
    /// issuer's routes (an upstream choosing its `jwks_uri` must not be able to).
    pub fn conflict(&self, index: usize, path: &str) -> Option<String> {
        self.conflict_in(&self.table.load(), index, path)
    }

    fn conflict_in(&self, table: &RouteTable, index: usize, path: &str) -> Option<String> {
        let me = self.issuers.get(index)?;
        let on_host = self.on_host.get(me.host.as_str())?;
        for r in on_host.iter().map(|&i| &self.issuers[i]) {
            if r.discovery_path == path {
                return Some(if r.index == index {
                    format!("key set path {path:?} is the issuer's own discovery path")
                } else {
                    format!("key set path {path:?} is the discovery path of issuer {:?}", r.name)
                });
            }
            if r.index == index {
                continue;
            }
            if table.jwks_path(r.index) == Some(path) {
                return Some(format!(
                    "key set path {path:?} is already the key set path of issuer {:?}",
                    r.name
                ));
            }
            if r.base_path.len() > me.base_path.len() && is_under(path, &r.base_path) {
                return Some(format!(
                    "key set path {path:?} lies under the public URL of issuer {:?}, whose paths it would take",
                    r.name
                ));
            }
        }
        None
    }

    /// Takes the key set `target` that issuer `index`'s new discovery document names
    /// (`None`: it names none) into the routing table, unless its path conflicts with
    /// another issuer's routes; then the table stays as it is and the reason is returned.
    /// Call it before storing the document, so that no one reads a `jwks_uri` that does
    /// not route yet.
    pub fn claim(&self, index: usize, target: Option<&JwksTarget>) -> Result<(), String> {
        let Some(me) = self.issuers.get(index) else {
            return Ok(());
        };
        // A configured path was checked with the config and always wins over the
        // document's; only learned ones are checked and published here.
        if me.fixed_jwks_path.is_some() {
            return Ok(());
        }
        let _publishing = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        let path = target.map(|t| t.public_path.as_str());
        if current.jwks_path(index) == path {
            return Ok(());
        }
        if let Some(path) = path {
            if let Some(conflict) = self.conflict_in(&current, index, path) {
                return Err(conflict);
            }
        }
        // Only this issuer's host changes; every other host's routes are shared.
        let host = &current.host_of[index];
        let members: Vec<&IssuerRoute> = self.on_host[host].iter().map(|&i| &self.issuers[i]).collect();
        let routes = HostRoutes::build(&members, |i| {
            if i == index {
                path.map(str::to_owned)
            } else {
                current.jwks_path(i).map(str::to_owned)
            }
        });
        let mut hosts = current.hosts.clone();
        hosts.insert(host.clone(), Arc::new(routes));
        self.table.store(Arc::new(RouteTable {
            hosts,
            host_of: current.host_of.clone(),
        }));
        self.published.send_modify(|version| *version = version.wrapping_add(1));
        Ok(())
    }
}

fn is_under(path: &str, base: &str) -> bool {
    path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

/// Lower-case host without port or trailing dot; `None` if it cannot be a host name.
pub fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    let host = if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn router(toml: &str) -> Router {
        let text = format!("[server]\nlisten_plain = \"127.0.0.1:1\"\n{toml}");
        let config = Config::from_toml(&text, Path::new(".")).unwrap();
        Router::new(&config.issuers)
    }

    #[test]
    fn hosts_normalise() {
        assert_eq!(
            normalize_host("Auth.Example.COM:8443").as_deref(),
            Some("auth.example.com")
        );
        assert_eq!(normalize_host("auth.example.com.").as_deref(), Some("auth.example.com"));
        assert_eq!(normalize_host("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1").as_deref(), None);
        assert_eq!(normalize_host(":80").as_deref(), None);
    }

    #[test]
    fn realms_on_one_host_route_by_path() {
        let router = router(
            "[[issuer]]\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc/realms/prod\"\npublic_jwks_path = \"/realms/prod/certs\"\n\
             [[issuer]]\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://kc/realms/dev\"\n",
        );
        let r = |host, path| router.route(host, path);
        assert_eq!(
            r("auth.example.com", "/realms/prod/.well-known/openid-configuration"),
            Route::Doc(DocId::discovery(0))
        );
        assert_eq!(
            r("AUTH.example.com:443", "/realms/dev/.well-known/openid-configuration"),
            Route::Doc(DocId::discovery(1))
        );
        assert_eq!(r("auth.example.com", "/realms/prod/certs"), Route::Doc(DocId::jwks(0)));
        // dev's key set path is unknown until its discovery document arrives.
        assert_eq!(r("auth.example.com", "/realms/dev/certs"), Route::Pending(1));
        assert_eq!(
            r("auth.example.com", "/realms/prod/.well-known/openid-configuration/"),
            Route::NotFound
        );
        assert_eq!(
            r("auth.example.com", "/.well-known/openid-configuration"),
            Route::NotFound
        );
        assert_eq!(r("other.example.com", "/realms/prod/certs"), Route::NotFound);
        assert_eq!(r("auth.example.com", "/realms/staging/x"), Route::NotFound);
    }

    fn target(public_path: &str) -> JwksTarget {
        JwksTarget {
            shape: crate::model::jwks_target::JwksShape::UnderUpstream,
            public_url: format!("https://auth.example.com{public_path}"),
            public_path: public_path.to_owned(),
            upstream_url: format!("http://kc{public_path}"),
        }
    }

    const TWO_REALMS: &str = "[[issuer]]\nname = \"prod\"\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc/realms/prod\"\n\
        [[issuer]]\nname = \"dev\"\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://kc/realms/dev\"\n";

    #[test]
    fn a_claimed_key_set_path_routes_and_a_conflicting_one_changes_nothing() {
        let router = router(TWO_REALMS);
        let before = router.table();
        router.claim(0, Some(&target("/realms/prod/certs"))).unwrap();
        assert_eq!(
            router.route("auth.example.com", "/realms/prod/certs"),
            Route::Doc(DocId::jwks(0))
        );
        // The table a request already holds is a value: it does not change under it.
        assert_eq!(
            before.route("auth.example.com", "/realms/prod/certs"),
            Route::Pending(0)
        );

        let err = router.claim(1, Some(&target("/realms/prod/certs"))).unwrap_err();
        assert!(err.contains("is already the key set path of issuer \"prod\""), "{err}");
        let err = router.claim(1, Some(&target("/realms/prod/x"))).unwrap_err();
        assert!(err.contains("lies under the public URL of issuer \"prod\""), "{err}");
        assert_eq!(router.table().jwks_path(1), None);
        assert_eq!(router.route("auth.example.com", "/realms/dev/certs"), Route::Pending(1));

        // A moved key set leaves its old path.
        router.claim(0, Some(&target("/realms/prod/keys"))).unwrap();
        assert_eq!(router.route("auth.example.com", "/realms/prod/certs"), Route::NotFound);
        assert_eq!(
            router.route("auth.example.com", "/realms/prod/keys"),
            Route::Doc(DocId::jwks(0))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_request_gets_the_table_that_learns_its_issuer() {
        let router = Arc::new(router(TWO_REALMS));
        let start = Instant::now();
        let waiter = {
            let router = router.clone();
            tokio::spawn(async move { router.learned(1, start + std::time::Duration::from_secs(2)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Another issuer's publication does not end the wait.
        router.claim(0, Some(&target("/realms/prod/certs"))).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        router.claim(1, Some(&target("/realms/dev/certs"))).unwrap();
        let table = waiter.await.unwrap();
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(500));
        assert_eq!(
            table.route("auth.example.com", "/realms/dev/certs"),
            Route::Doc(DocId::jwks(1))
        );

        // Without a publication, the wait ends at the deadline with the table in force.
        let router = self::router(TWO_REALMS);
        let start = Instant::now();
        let table = router.learned(1, start + std::time::Duration::from_secs(2)).await;
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(2));
        assert_eq!(table.route("auth.example.com", "/realms/dev/certs"), Route::Pending(1));
    }
}
