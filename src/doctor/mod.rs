//! `jwks-edge doctor`: every check that explains an `InvalidIdentityToken`, from outside.
//!
//! `run` walks what a relying party does — URL, DNS, TLS, discovery, key set, token —
//! and records each step in a `Report`.

mod documents;
mod keys;
mod net;
mod report;
mod token;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Uri;

pub use net::{is_private, ResolveOverride};
pub use report::{Check, Report, Status};

use documents::{check_discovery, check_jwks};
use net::Net;
use report::sts;
use transport::{check_reachable, check_tls, check_url};

/// Everything the command line passes in.
#[derive(Clone, Debug)]
pub struct Options {
    pub issuer: String,
    /// The token's text, when one is to be checked.
    pub token: Option<String>,
    pub audiences: Vec<String>,
    /// Trust only this PEM bundle instead of the system roots.
    pub ca_file: Option<PathBuf>,
    pub resolve: Vec<ResolveOverride>,
    pub timeout: Duration,
    pub allow_private: bool,
    /// How many times the key set is fetched, to catch replicas that disagree.
    pub jwks_fetches: usize,
}

fn roots(ca_file: Option<&PathBuf>) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca-file {} holds no certificate", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    Ok(roots)
}

/// Runs every check and returns the report.
pub async fn run(options: Options) -> Report {
    let mut report = Report {
        issuer: options.issuer.clone(),
        ..Report::default()
    };
    let now = SystemTime::now();
    let Some(url) = check_url(&mut report, &options.issuer) else {
        skip_rest(&mut report, "the issuer URL is not usable");
        return report;
    };
    let roots = match roots(options.ca_file.as_ref()) {
        Ok(roots) => roots,
        Err(reason) => {
            report.fail("tls.roots", reason, "pass a readable PEM bundle", sts::UNREACHABLE);
            return report;
        }
    };
    let net = Net {
        overrides: options.resolve.clone(),
        roots: Arc::new(roots),
        timeout: options.timeout,
    };

    let discovery_url: Uri = match format!(
        "{}/.well-known/openid-configuration",
        options.issuer.trim_end_matches('/')
    )
    .parse()
    {
        Ok(u) => u,
        Err(_) => {
            report.fail(
                "url.form",
                "cannot build the discovery URL",
                "check the issuer URL",
                sts::UNREACHABLE,
            );
            return report;
        }
    };
    let Some(addr) = check_reachable(&mut report, &net, &url, "dns", options.allow_private).await else {
        skip_rest(&mut report, "the issuer's host cannot be reached");
        return report;
    };
    let discovery = match net.get(&discovery_url, addr).await {
        Ok(fetched) => fetched,
        Err(reason) => {
            let id = if reason.starts_with("TLS") {
                "tls.handshake"
            } else {
                "discovery.fetch"
            };
            report.fail(
                id,
                reason,
                "make the issuer answer HTTPS on this address",
                sts::UNREACHABLE,
            );
            skip_rest(&mut report, "the discovery document could not be fetched");
            return report;
        }
    };
    check_tls(&mut report, &net, &url, addr, discovery.tls.as_ref(), now).await;
    let Some(jwks_uri) = check_discovery(&mut report, &options.issuer, &discovery) else {
        if let Some(token) = &options.token {
            token::check_token(&mut report, token, &options.issuer, None, &options.audiences, now);
        }
        return report;
    };
    let keys = check_jwks(&mut report, &net, &url, &jwks_uri, &options).await;
    if let Some(token) = &options.token {
        token::check_token(
            &mut report,
            token,
            &options.issuer,
            keys.as_deref(),
            &options.audiences,
            now,
        );
    }
    report
}

fn skip_rest(report: &mut Report, why: &str) {
    for id in ["discovery", "jwks"] {
        report.skip(id, why);
    }
}
