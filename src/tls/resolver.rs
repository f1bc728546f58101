//! `CertResolver`: the server certificates, picked by SNI, swapped whole on reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::Tls;
use crate::tls::challenges::{Challenges, ACME_TLS_ALPN};
use crate::tls::material::{load_certified_key, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Load(#[from] TlsError),
    #[error("the certificate in {path:?} cannot be parsed")]
    Parse { path: PathBuf },
    #[error("the certificate in {path:?} expired at {not_after}")]
    Expired { path: PathBuf, not_after: String },
}

/// One certificate and what it is valid for.
#[derive(Clone, Debug)]
pub struct ServerCert {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names from the subject alternative names (`*.` wildcards kept).
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Where it came from: the certificate file, or the ACME cache file.
    pub cert_file: PathBuf,
}

impl ServerCert {
    /// Loads and checks one certificate: readable, key matching, not expired at `now`.
    pub fn load(files: &Tls, now: SystemTime) -> Result<ServerCert, CertError> {
        let key = load_certified_key(&files.cert, &files.key)?;
        ServerCert::new(key, &files.cert, now)
    }

    /// Checks a loaded chain and key: parseable, not expired at `now`; reads its names.
    pub fn new(key: CertifiedKey, origin: &std::path::Path, now: SystemTime) -> Result<ServerCert, CertError> {
        let parse_error = || CertError::Parse {
            path: origin.to_owned(),
        };
        let leaf = key.end_entity_cert().map_err(|_| parse_error())?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|_| parse_error())?;
        let time = |t: x509_parser::time::ASN1Time| crate::model::timestamp::from_unix_seconds_signed(t.timestamp());
        let not_before = time(parsed.validity().not_before);
        let not_after = time(parsed.validity().not_after);
        if not_after <= now {
            return Err(CertError::Expired {
                path: origin.to_owned(),
                not_after: crate::model::timestamp::rfc3339_seconds(not_after).to_string(),
            });
        }
        let mut names = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                    names.push(dns.to_ascii_lowercase());
                }
            }
        }
        Ok(ServerCert {
            key: Arc::new(key),
            names,
            not_before,
            not_after,
            cert_file: origin.to_owned(),
        })
    }

    /// Whether this certificate is valid for the host name `sni` (lower case).
    pub fn covers(&self, sni: &str) -> bool {
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(suffix) => sni
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => name == sni,
        })
    }
}

/// A complete set: the first certificate is the default for clients without SNI or with
/// a name no certificate covers.
#[derive(Debug)]
pub struct CertSet {
    pub certs: Vec<ServerCert>,
}

impl CertSet {
    /// Loads every certificate, or none: one bad file keeps the whole previous set.
    pub fn load(files: &[Tls], now: SystemTime) -> Result<CertSet, CertError> {
        let certs = files
            .iter()
            .map(|f| ServerCert::load(f, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertSet { certs })
    }

    pub fn single(key: CertifiedKey) -> CertSet {
        CertSet {
            certs: vec![ServerCert {
                key: Arc::new(key),
                names: Vec::new(),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64),
                cert_file: PathBuf::from("<memory>"),
            }],
        }
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let chosen = sni
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| self.certs.iter().find(|c| c.covers(&name)));
        chosen.or(self.certs.first()).map(|c| c.key.clone())
    }
}

/// The server certificates. Written by the reloader (a whole new set at a time), read by
/// every TLS handshake; established connections keep the certificate they started with.
pub struct CertResolver {
    current: RwLock<Arc<CertSet>>,
    /// Why the last reload was refused, until one succeeds (shown by `/readyz`).
    last_error: Mutex<Option<String>>,
    /// TLS-ALPN-01 answers, when ACME is on.
    challenges: Option<Arc<Challenges>>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    pub fn new(set: CertSet) -> CertResolver {
        CertResolver {
            current: RwLock::new(Arc::new(set)),
            last_error: Mutex::new(None),
            challenges: None,
        }
    }

    /// A resolver that also answers TLS-ALPN-01 validation handshakes from `challenges`.
    pub fn with_challenges(set: CertSet, challenges: Arc<Challenges>) -> CertResolver {
        CertResolver {
            challenges: Some(challenges),
            ..CertResolver::new(set)
        }
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn replace(&self, set: CertSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn refuse(&self, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737: a validation handshake offers `acme-tls/1` alone and must get the
        // challenge certificate; the connection is closed right after (server.rs).
        if let Some(challenges) = &self.challenges {
            let only_acme = hello
                .alpn()
                .is_some_and(|mut offered| offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none());
            if only_acme {
                return challenges.tls_alpn(hello.server_name()?);
            }
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pick(hello.server_name())
    }
}

/// A digest of the certificate and key files as they are on disk now, to notice changes
/// without trusting modification times.
fn fingerprint(files: &[Tls]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for file in files {
        for path in [&file.cert, &file.key] {
            match std::fs::read(path) {
                Ok(bytes) => ctx.update(&bytes),
                Err(_) => ctx.update(b"<unreadable>"),
            }
            ctx.update(b"\0");
        }
    }
    ctx.finish().as_ref().to_vec()
}

/// Reloads the certificates when their files change (polled every `interval`) or when
/// `now` is notified (SIGHUP). A set that fails to load keeps the previous one.
pub async fn reload_loop(
    resolver: Arc<CertResolver>,
    files: Vec<Tls>,
    interval: Duration,
    now: Arc<Notify>,
    failures: prometheus_client::metrics::counter::Counter,
) {
    let mut seen = fingerprint(&files);
    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            () = now.notified() => true,
        };
        let files_now = files.clone();
        let Ok(current) = tokio::task::spawn_blocking(move || fingerprint(&files_now)).await else {
            continue;
        };
        if current == seen && !forced {
            continue;
        }
        seen = current;
        let files_now = files.clone();
        let loaded = tokio::task::spawn_blocking(move || CertSet::load(&files_now, SystemTime::now())).await;
        match loaded {
            Ok(Ok(set)) => {
                for cert in &set.certs {
                    info!(
                        cert = %cert.cert_file.display(),
                        names = ?cert.names,
                        not_after = %crate::model::timestamp::rfc3339_seconds(cert.not_after),
                        "certificate loaded"
                    );
                }
                resolver.replace(set);
            }
            Ok(Err(err)) => {
                let reason = crate::error_chain(&err);
                warn!("certificate reload refused, keeping the current certificates: {reason}");
                failures.inc();
                resolver.refuse(reason);
            }
            Err(_) => {}
        }
    }
}

/// A certificate for `names` valid from `not_before` to `not_after`, with no real key:
/// for unit tests of choosing and scheduling, which never sign.
#[cfg(test)]
pub(crate) fn test_cert(names: &[&str], not_before: SystemTime, not_after: SystemTime) -> ServerCert {
    #[derive(Debug)]
    struct NoKey;

    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(&self, _: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    ServerCert {
        key: Arc::new(CertifiedKey::new(vec![], Arc::new(NoKey))),
        names: names.iter().map(|n| n.to_string()).collect(),
        not_before,
        not_after,
        cert_file: PathBuf::from(names[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> ServerCert {
        test_cert(names, SystemTime::now(), SystemTime::now())
    }

    #[test]
    fn sni_picks_the_covering_certificate_or_the_default() {
        let set = CertSet {
            certs: vec![
                cert(&["default.example"]),
                cert(&["*.example.com"]),
                cert(&["auth.example.org"]),
            ],
        };
        let pick = |sni: Option<&str>| {
            let key = set.pick(sni).unwrap();
            set.certs.iter().position(|c| Arc::ptr_eq(&c.key, &key)).unwrap()
        };
        assert_eq!(pick(Some("auth.example.org")), 2);
        assert_eq!(pick(Some("AUTH.example.org.")), 2);
        assert_eq!(pick(Some("gitlab.example.com")), 1);
        assert_eq!(pick(Some("example.com")), 0, "a wildcard covers one label only");
        assert_eq!(pick(Some("a.b.example.com")), 0);
        assert_eq!(pick(None), 0);
    }
}
