//! `Router`: maps a request's host and exact path to one configured document.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::store::DocumentStore;
use crate::config::Issuer;
use crate::model::document::Document;
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

#[derive(Debug)]
struct IssuerRoute {
    index: usize,
    name: String,
    base_path: String,
    discovery_path: String,
    /// `public_jwks_path` from the config; otherwise learned from the discovery document.
    fixed_jwks_path: Option<String>,
}

/// Routes by host (port ignored, case-insensitive) then exact path. Built once from the
/// config; the only per-request state it reads is each issuer's current discovery
/// document, which names the key set path.
#[derive(Debug)]
pub struct Router {
    hosts: HashMap<String, Vec<IssuerRoute>>,
    /// Each issuer's public host, by issuer index.
    host_of: Vec<String>,
    /// Held by a discovery refresher while it checks its key set path and stores the
    /// document, so two issuers cannot both claim one path at the same moment. Never
    /// taken on the request path.
    claims: Mutex<()>,
}

impl Router {
    pub fn new(issuers: &[Issuer]) -> Router {
        let mut hosts: HashMap<String, Vec<IssuerRoute>> = HashMap::new();
        for (index, issuer) in issuers.iter().enumerate() {
            hosts
                .entry(issuer.public.host().to_owned())
                .or_default()
                .push(IssuerRoute {
                    index,
                    name: issuer.name.clone(),
                    base_path: issuer.public.path().to_owned(),
                    discovery_path: issuer.discovery_path(),
                    fixed_jwks_path: issuer.public_jwks_path.clone(),
                });
        }
        Router {
            hosts,
            host_of: issuers.iter().map(|i| i.public.host().to_owned()).collect(),
            claims: Mutex::new(()),
        }
    }

    /// The routes on issuer `index`'s host, and its own among them.
    fn entry(&self, index: usize) -> Option<(&[IssuerRoute], &IssuerRoute)> {
        let issuers = self.hosts.get(self.host_of.get(index)?)?;
        Some((issuers, issuers.iter().find(|r| r.index == index)?))
    }

    /// The key set path `issuer` currently publishes at: configured, or learned from
    /// its discovery document.
    fn jwks_path<'a>(r: &'a IssuerRoute, learned: &'a Option<Arc<Document>>) -> Option<&'a str> {
        match &r.fixed_jwks_path {
            Some(p) => Some(p.as_str()),
            None => learned
                .as_deref()
                .and_then(|d| d.jwks.as_ref())
                .map(|t| t.public_path.as_str()),
        }
    }

    /// Why issuer `index` may not publish its key set at `path`, if it may not: the path
    /// is a discovery path or another issuer's key set path on the same host, or it lies
    /// under another issuer's longer public base there, where it would take that
    /// issuer's routes (an upstream choosing its `jwks_uri` must not be able to).
    pub fn conflict(&self, index: usize, path: &str, store: &DocumentStore) -> Option<String> {
        let (issuers, me) = self.entry(index)?;
        for r in issuers {
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
            let learned = if r.fixed_jwks_path.is_none() {
                store.get(DocId::discovery(r.index))
            } else {
                None
            };
            if Router::jwks_path(r, &learned) == Some(path) {
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

    /// Stores issuer `index`'s discovery document unless the key set path it names
    /// conflicts with another issuer's routes (then the previous document and mapping
    /// stay, and the reason is returned).
    pub fn claim(&self, index: usize, doc: Arc<Document>, store: &DocumentStore) -> Result<(), String> {
        let _claiming = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let fixed = self.entry(index).is_some_and(|(_, me)| me.fixed_jwks_path.is_some());
        // A configured path was checked with the config; only learned ones are checked here.
        if let (false, Some(target)) = (fixed, doc.jwks.as_ref()) {
            if let Some(conflict) = self.conflict(index, &target.public_path, store) {
                return Err(conflict);
            }
        }
        store.put(DocId::discovery(index), doc);
        Ok(())
    }

    /// `host` is the request's host (with or without port); `path` its exact path.
    pub fn route(&self, host: &str, path: &str, store: &DocumentStore) -> Route {
        let Some(host) = normalize_host(host) else {
            return Route::NotFound;
        };
        let Some(issuers) = self.hosts.get(host.as_ref()) else {
            return Route::NotFound;
        };
        // Discovery paths first: they are fixed by the config and cannot be shadowed by a
        // key set path some upstream advertises.
        if let Some(r) = issuers.iter().find(|r| r.discovery_path == path) {
            return Route::Doc(DocId::discovery(r.index));
        }
        let mut pending = None;
        for r in issuers {
            let learned = if r.fixed_jwks_path.is_none() {
                store.get(DocId::discovery(r.index))
            } else {
                None
            };
            match Router::jwks_path(r, &learned) {
                Some(p) if p == path => return Route::Doc(DocId::jwks(r.index)),
                Some(_) => {}
                None if pending.is_none() && is_under(path, &r.base_path) => pending = Some(r.index),
                None => {}
            }
        }
        pending.map_or(Route::NotFound, Route::Pending)
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

    fn router(toml: &str) -> (Router, DocumentStore) {
        let text = format!("[server]\nlisten_plain = \"127.0.0.1:1\"\n{toml}");
        let config = Config::from_toml(&text, Path::new(".")).unwrap();
        (Router::new(&config.issuers), DocumentStore::new(config.issuers.len()))
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
        let (router, store) = router(
            "[[issuer]]\npublic_url = \"https://auth.example.com/realms/prod\"\nupstream = \"http://kc/realms/prod\"\npublic_jwks_path = \"/realms/prod/certs\"\n\
             [[issuer]]\npublic_url = \"https://auth.example.com/realms/dev\"\nupstream = \"http://kc/realms/dev\"\n",
        );
        let r = |host, path| router.route(host, path, &store);
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
}
