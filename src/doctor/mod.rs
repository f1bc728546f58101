//! `jwks-edge doctor`: every check that explains an `InvalidIdentityToken`, from outside.
//!
//! `run` walks what a relying party does — URL, DNS, TLS, discovery, key set, token —
//! and records each step in a `Report`. A failed check stops only the checks that need
//! its result: one run shows every problem it can see.
//!
//! ```text
//! checks     transport (URL, DNS, TLS)   thumbprint   documents   keys   token
//!            policy (provider audience, trust policy) ─> conditions    clouds (--cloud)
//! network    net (GET, TLS probe) ─> resolver (pinned, policed) ─> address (classes)
//!            trust (roots)
//! output     report (Check, Status, Sts) ─> escape     numeric_date (times)
//! ```
//!
//! Failures are typed where they happen (`RouteError`, `FetchError`, `Untrusted`,
//! `RootsError`, `Unverified`) and become a check's message through their `Display`
//! alone; code that decides on a failure matches its variant, never its text.

mod address;
mod clouds;
mod conditions;
mod documents;
mod escape;
mod keys;
mod net;
mod numeric_date;
mod options;
mod policy;
mod report;
mod resolver;
mod statement;
mod thumbprint;
mod token;
mod transport;
mod trust;

use std::sync::Arc;
use std::time::SystemTime;

use http::Uri;

pub use address::is_private;
pub use options::{Cloud, Options, UnknownCloud};
pub use report::{Check, Report, Status, Sts};
pub use resolver::ResolveOverride;
pub use thumbprint::{normalise as normalise_thumbprint, publicly_trusted};

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
    let remote = match check_url(&mut report, &options.issuer) {
        Some(url) => check_remote(&mut report, &options, &url, now).await,
        None => {
            skip_rest(&mut report, "the issuer URL is not usable");
            Remote::default()
        }
    };
    let keys = remote.keys.as_deref();
    // The token's own checks need no network: they run whatever happened above.
    let claims = options.token.as_deref().and_then(token::claims_of);
    let alg = options.token.as_deref().and_then(token::alg_of);
    // The provider's client IDs are expected audiences too, when --audience names none.
    let audiences = if options.audiences.is_empty() {
        &options.provider_audiences
    } else {
        &options.audiences
    };
    if let Some(token) = &options.token {
        token::check_token(&mut report, token, &options.issuer, keys, audiences, now);
    }
    match &claims {
        Some(claims) => policy::check_policy(
            &mut report,
            claims,
            &options.issuer,
            options.trust_policy.as_deref(),
            &options.provider_audiences,
        ),
        None if options.trust_policy.is_some() || !options.provider_audiences.is_empty() => {
            report.skip("policy.statements", "no token whose claims to evaluate (pass --token)")
        }
        None => {}
    }
    clouds::check_clouds(
        &mut report,
        options.cloud,
        &clouds::Seen {
            issuer: &options.issuer,
            alg: alg.as_deref(),
            claims: claims.as_ref(),
            keys,
            public_ca: remote.public_ca,
            provider_audiences: &options.provider_audiences,
        },
    );
    report
}

/// What the network checks found that later checks use.
#[derive(Default)]
struct Remote {
    keys: Option<Vec<Value>>,
    /// Whether the issuer's chain (and jwks_uri's, on another host) leads to a public
    /// root (`None`: no chain seen).
    public_ca: Option<bool>,
}

/// DNS, TLS, discovery and key set; returns the published keys when they could be read.
async fn check_remote(report: &mut Report, options: &Options, url: &Uri, now: SystemTime) -> Remote {
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
            return Remote::default();
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
            return Remote::default();
        }
    };
    if !check_reachable(report, &net, url, Host::Issuer).await {
        skip_rest(report, "the issuer's host cannot be reached");
        return Remote::default();
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
            return Remote::default();
        }
    };
    check_tls(report, &net, url, discovery.tls.as_ref(), now).await;
    let public_ca = thumbprint::check_thumbprint(
        report,
        thumbprint::ISSUER,
        net::host_of(url),
        discovery.tls.as_ref(),
        &options.thumbprints,
        now,
    );
    let Some(jwks_uri) = check_discovery(report, &options.issuer, &discovery) else {
        report.skip("jwks", "the discovery document names no key set the doctor can fetch");
        return Remote { keys: None, public_ca };
    };
    let key_set = check_jwks(report, &net, url, &jwks_uri, options, now).await;
    Remote {
        keys: key_set.keys,
        // A relying party needing a public CA fetches from both hosts.
        public_ca: match (public_ca, key_set.public_ca) {
            (Some(issuer), Some(keys)) => Some(issuer && keys),
            (issuer, keys) => issuer.or(keys),
        },
    }
}

fn skip_rest(report: &mut Report, why: &str) {
    for id in ["discovery", "jwks"] {
        report.skip(id, why);
    }
}
