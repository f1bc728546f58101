//! `jwks-edge doctor`: every check that explains an `InvalidIdentityToken`, from outside.
//!
//! `run` walks what a relying party does — URL, DNS, TLS, discovery, key set, token —
//! and records each step in a `Report`. A failed check stops only the checks that need
//! its result: one run shows every problem it can see.
//!
//! ```text
//! checks     transport (URL, DNS, TLS)   documents   keys   token
//! network    net (GET, TLS probe) ─> resolver (pinned, policed) ─> address (classes)
//!            trust (roots)
//! output     report (Check, Status, Sts) ─> escape     numeric_date (times)
//! ```
//!
//! Failures are typed where they happen (`RouteError`, `FetchError`, `Untrusted`,
//! `RootsError`, `Unverified`) and become a check's message through their `Display`
//! alone; code that decides on a failure matches its variant, never its text.

mod address;
mod documents;
mod escape;
mod keys;
mod net;
mod numeric_date;
mod options;
mod report;
mod resolver;
mod token;
mod transport;
mod trust;

use std::sync::Arc;
use std::time::SystemTime;

use http::Uri;

pub use address::is_private;
pub use options::Options;
pub use report::{Check, Report, Status, Sts};
pub use resolver::ResolveOverride;

use address::AddressPolicy;
use documents::{check_discovery, check_jwks};
use net::{FetchError, Net};
use resolver::{Resolver, RouteError};
use serde_json::Value;
use transport::{check_reachable, check_tls, check_url, Host};

/// Runs every check and returns the report.
pub async fn run(options: Options) -> Report {
    let mut report = Report {
        issuer: options.issuer.clone(),
        ..Report::default()
    };
    let now = SystemTime::now();
    let keys = match check_url(&mut report, &options.issuer) {
        Some(url) => check_remote(&mut report, &options, &url, now).await,
        None => {
            skip_rest(&mut report, "the issuer URL is not usable");
            None
        }
    };
    // The token's own checks need no network: they run whatever happened above.
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

/// DNS, TLS, discovery and key set; returns the published keys when they could be read.
async fn check_remote(report: &mut Report, options: &Options, url: &Uri, now: SystemTime) -> Option<Vec<Value>> {
    let roots = match trust::roots(options.ca_file.as_deref()) {
        Ok(roots) => roots,
        Err(reason) => {
            report.fail(
                "tls.roots",
                reason.to_string(),
                "pass a readable PEM bundle",
                Sts::Unreachable,
            );
            skip_rest(report, "no trusted roots");
            return None;
        }
    };
    let policy = AddressPolicy {
        allow_private: options.allow_private,
        assume_public: options.assume_public.clone(),
    };
    let net = Net {
        resolver: Arc::new(Resolver::new(options.resolve.clone(), policy, options.timeout)),
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
                Sts::Unreachable,
            );
            skip_rest(report, "the issuer URL is not usable");
            return None;
        }
    };
    if !check_reachable(report, &net, url, Host::Issuer).await {
        skip_rest(report, "the issuer's host cannot be reached");
        return None;
    }
    let discovery = match net.get(&discovery_url).await {
        Ok(fetched) => fetched,
        Err(err) => {
            let id = match &err {
                FetchError::Route(RouteError::Refused { .. }) => "dns.public",
                FetchError::ServerName(_) | FetchError::Tls(_) => "tls.handshake",
                _ => "discovery.fetch",
            };
            report.fail(
                id,
                err.to_string(),
                "make the issuer answer HTTPS on this address",
                Sts::Unreachable,
            );
            skip_rest(report, "the discovery document could not be fetched");
            return None;
        }
    };
    check_tls(report, &net, url, discovery.tls.as_ref(), now).await;
    let Some(jwks_uri) = check_discovery(report, &options.issuer, &discovery) else {
        report.skip("jwks", "the discovery document names no key set the doctor can fetch");
        return None;
    };
    check_jwks(report, &net, url, &jwks_uri, options).await
}

fn skip_rest(report: &mut Report, why: &str) {
    for id in ["discovery", "jwks"] {
        report.skip(id, why);
    }
}
