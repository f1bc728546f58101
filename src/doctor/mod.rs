//! `jwks-edge doctor`: every check that explains an `InvalidIdentityToken`, from outside.
//!
//! `run` walks what a relying party does — URL, DNS, TLS, discovery, key set, token —
//! and records each step in a `Report`.

mod keys;
mod net;
mod report;
mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Uri};
use serde_json::Value;

pub use net::{is_private, ResolveOverride};
pub use report::{Check, Report, Status};

use net::{Fetched, Net};
use report::sts;

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

/// Discovery or key set latency over this is a warning (STS gives up near 5 s).
const SLOW: Duration = Duration::from_secs(1);
const STS_LIMIT: Duration = Duration::from_secs(5);

fn roots(ca_file: Option<&PathBuf>) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
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

/// Why a response's caching headers make relying parties re-fetch on every token.
fn cache_problem(headers: &HeaderMap) -> Option<String> {
    let cache_control = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
        .to_ascii_lowercase();
    let pragma = headers
        .get(http::header::PRAGMA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let directives: Vec<&str> = cache_control.split(',').map(str::trim).collect();
    let bad: Vec<&str> = directives
        .iter()
        .copied()
        .filter(|d| *d == "no-cache" || *d == "no-store" || *d == "max-age=0")
        .collect();
    if !bad.is_empty() {
        return Some(format!("Cache-Control: {cache_control}"));
    }
    if pragma.contains("no-cache") {
        return Some(format!("Pragma: {pragma}"));
    }
    None
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

fn check_url(report: &mut Report, issuer: &str) -> Option<Uri> {
    let url = match issuer.parse::<Uri>() {
        Ok(url) if url.scheme().is_some() && url.host().is_some() => url,
        _ => {
            report.fail(
                "url.form",
                format!("{issuer:?} is not an absolute URL"),
                "pass the issuer exactly as tokens carry it in `iss`, such as https://gitlab.example.com",
                sts::NO_PROVIDER,
            );
            return None;
        }
    };
    if url.scheme_str() != Some("https") {
        report.fail(
            "url.https",
            format!("the scheme is {}", url.scheme_str().unwrap_or_default()),
            "relying parties only accept https issuers: publish it over HTTPS (jwks-edge terminates TLS)",
            sts::UNREACHABLE,
        );
        return None;
    }
    report.pass("url.https", "https");
    if issuer.contains(['?', '#']) {
        report.fail(
            "url.form",
            "the issuer URL has a query or fragment",
            "an issuer is scheme, host and path only",
            sts::NO_PROVIDER,
        );
    } else if url.path().len() > 1 && issuer.ends_with('/') {
        report.warn(
            "url.form",
            "the issuer URL ends with a slash; issuers are compared exactly",
            "make sure tokens carry the slash too, or drop it everywhere",
            Some(sts::NO_PROVIDER),
        );
    } else if issuer.ends_with('/') {
        report.warn(
            "url.form",
            "the issuer URL ends with a slash; issuers are compared exactly",
            "use the URL without the trailing slash, as tokens usually carry it",
            Some(sts::NO_PROVIDER),
        );
    } else {
        report.pass("url.form", "no query, fragment or trailing slash");
    }
    if url.port_u16().is_some() {
        report.warn(
            "url.port",
            "the URL has a port",
            "AWS does not accept a port in an identity provider URL: serve it on 443",
            Some(sts::NO_PROVIDER),
        );
    }
    Some(url)
}

async fn check_reachable(
    report: &mut Report,
    net: &Net,
    url: &Uri,
    what: &'static str,
    allow_private: bool,
) -> Option<std::net::SocketAddr> {
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(443);
    let (id_dns, id_private) = if what == "dns" {
        ("dns.resolve", "dns.public")
    } else {
        ("jwks.dns", "jwks.public")
    };
    let addrs = match net.resolve(host, port).await {
        Ok(addrs) => addrs,
        Err(reason) => {
            report.fail(id_dns, reason, "publish a DNS record for the host", sts::UNREACHABLE);
            return None;
        }
    };
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    report.pass(id_dns, format!("{host} resolves to {}", list.join(", ")));
    let private: Vec<&String> = addrs
        .iter()
        .zip(&list)
        .filter(|(a, _)| is_private(a.ip()))
        .map(|(_, s)| s)
        .collect();
    if private.is_empty() {
        report.pass(id_private, "every address is public");
    } else if allow_private {
        report.pass(
            id_private,
            format!("private addresses allowed by --allow-private: {private:?}"),
        );
    } else {
        report.fail(
            id_private,
            format!("private, loopback or link-local addresses: {private:?}"),
            "the relying party fetches from the internet: publish the issuer on a public address (jwks-edge at the edge)",
            sts::UNREACHABLE,
        );
    }
    addrs.first().copied()
}

async fn check_tls(
    report: &mut Report,
    net: &Net,
    url: &Uri,
    addr: std::net::SocketAddr,
    facts: Option<&net::TlsFacts>,
    now: SystemTime,
) {
    let Some(facts) = facts else {
        report.skip("tls.chain", "no TLS");
        return;
    };
    report.pass(
        "tls.handshake",
        format!(
            "negotiated {}",
            facts.version.map(|v| format!("{v:?}")).unwrap_or_default()
        ),
    );
    match &facts.verified {
        Ok(()) => report.pass("tls.chain", "the chain is valid for the host and trusted"),
        Err(reason) => report.fail(
            "tls.chain",
            format!("the certificate is not trusted: {reason}"),
            "serve the full chain of a certificate from a public CA, valid for this host",
            sts::UNREACHABLE,
        ),
    }
    let leaf = facts.chain.first().and_then(|c| {
        x509_parser::parse_x509_certificate(c)
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    });
    if let Some(not_after) = leaf {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let days = (not_after - now).div_euclid(86_400);
        if not_after <= now {
            report.fail(
                "tls.expiry",
                format!("the certificate expired {} day(s) ago", -days),
                "renew the certificate",
                sts::UNREACHABLE,
            );
        } else if days < 14 {
            report.warn(
                "tls.expiry",
                format!("the certificate expires in {days} day(s)"),
                "renew the certificate",
                None,
            );
        } else {
            report.pass("tls.expiry", format!("the certificate expires in {days} days"));
        }
    }
    let host = url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut versions = Vec::new();
    if net.handshake_with(host, addr, &rustls::version::TLS13).await {
        versions.push("TLS 1.3");
    }
    if net.handshake_with(host, addr, &rustls::version::TLS12).await {
        versions.push("TLS 1.2");
    }
    if versions.is_empty() {
        report.fail(
            "tls.versions",
            "neither TLS 1.3 nor TLS 1.2 is offered",
            "enable TLS 1.2 or 1.3",
            sts::UNREACHABLE,
        );
    } else {
        report.pass("tls.versions", format!("offers {}", versions.join(" and ")));
    }
    match facts.chain.as_slice() {
        [] => {}
        [_leaf] => report.warn(
            "tls.thumbprint",
            "the server sends only its leaf certificate, no intermediate",
            "serve the full chain (leaf first, then intermediates)",
            None,
        ),
        chain => {
            let top = chain.last().expect("non-empty");
            let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, top);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            let subject = x509_parser::parse_x509_certificate(top)
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default();
            report.pass("tls.thumbprint", format!("top intermediate CA {subject}: SHA-1 {hex}"));
        }
    }
}

fn check_latency(report: &mut Report, id: &'static str, elapsed: Duration) {
    if elapsed >= STS_LIMIT {
        report.fail(
            id,
            format!("took {elapsed:?}; STS gives up near 5 s"),
            "serve the document from a cache in front of the IdP (jwks-edge)",
            sts::UNREACHABLE,
        );
    } else if elapsed > SLOW {
        report.warn(
            id,
            format!("took {elapsed:?}"),
            "serve the document from memory; STS gives up near 5 s",
            Some(sts::UNREACHABLE),
        );
    } else {
        report.pass(id, format!("answered in {} ms", elapsed.as_millis()));
    }
}

fn check_caching(report: &mut Report, id: &'static str, headers: &HeaderMap) {
    match cache_problem(headers) {
        Some(problem) => report.warn(
            id,
            format!("{problem}: relying parties re-fetch for every token"),
            "serve with Cache-Control: public, max-age=… (jwks-edge rewrites the IdP's headers)",
            Some(sts::THROTTLED),
        ),
        None => report.pass(id, "cacheable (no no-cache, no-store, max-age=0 or Pragma)"),
    }
}

/// Returns `jwks_uri` when the discovery document is usable.
fn check_discovery(report: &mut Report, issuer: &str, fetched: &Fetched) -> Option<Uri> {
    if fetched.status != http::StatusCode::OK {
        report.fail(
            "discovery.status",
            format!("answered {}", fetched.status),
            "serve the discovery document with 200 at <issuer>/.well-known/openid-configuration",
            sts::UNREACHABLE,
        );
        return None;
    }
    report.pass("discovery.status", "200");
    check_latency(report, "discovery.latency", fetched.elapsed);
    let doc = match serde_json::from_slice::<Value>(&fetched.body) {
        Ok(Value::Object(doc)) => doc,
        _ => {
            report.fail(
                "discovery.json",
                "the body is not a JSON object",
                "serve the IdP's discovery document, not an HTML page",
                sts::UNREACHABLE,
            );
            return None;
        }
    };
    report.pass("discovery.json", "a JSON object");
    match doc.get("issuer").and_then(Value::as_str) {
        Some(found) if found == issuer => report.pass("discovery.issuer", "issuer equals the URL exactly"),
        Some(found) => report.fail(
            "discovery.issuer",
            format!("issuer is {found:?}, not {issuer:?} (compared exactly, trailing slash included)"),
            "make the IdP's issuer (GitLab external_url, Keycloak frontend URL, --service-account-issuer) equal the public URL",
            sts::NO_PROVIDER,
        ),
        None => report.fail(
            "discovery.issuer",
            "the document has no issuer",
            "serve a complete discovery document",
            sts::UNREACHABLE,
        ),
    }
    let missing: Vec<&str> = [
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ]
    .into_iter()
    .filter(|f| !doc.contains_key(*f))
    .collect();
    if missing.is_empty() {
        report.pass("discovery.fields", "the required OpenID Connect fields are present");
    } else {
        report.warn(
            "discovery.fields",
            format!("missing OpenID Connect fields: {}", missing.join(", ")),
            "some relying parties (GCP, Azure) require them",
            None,
        );
    }
    check_caching(report, "discovery.caching", &fetched.headers);
    let jwks_uri = match doc.get("jwks_uri").and_then(Value::as_str) {
        Some(uri) => uri,
        None => {
            report.fail(
                "discovery.jwks_uri",
                "the document has no jwks_uri",
                "serve a discovery document that names its key set",
                sts::UNREACHABLE,
            );
            return None;
        }
    };
    match jwks_uri.parse::<Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
            report.pass("discovery.jwks_uri", format!("jwks_uri is {jwks_uri}"));
            Some(uri)
        }
        _ => {
            report.fail(
                "discovery.jwks_uri",
                format!("jwks_uri {jwks_uri:?} is not a public https URL"),
                "rewrite jwks_uri to the public URL (jwks-edge does this)",
                sts::UNREACHABLE,
            );
            None
        }
    }
}

async fn check_jwks(
    report: &mut Report,
    net: &Net,
    issuer_url: &Uri,
    jwks_uri: &Uri,
    options: &Options,
) -> Option<Vec<Value>> {
    let same_host = jwks_uri.authority() == issuer_url.authority();
    let addr = if same_host {
        net.resolve(jwks_uri.host()?, jwks_uri.port_u16().unwrap_or(443))
            .await
            .ok()?
            .first()
            .copied()?
    } else {
        check_reachable(report, net, jwks_uri, "jwks", options.allow_private).await?
    };
    let mut fetches = Vec::new();
    for _ in 0..options.jwks_fetches.max(1) {
        match net.get(jwks_uri, addr).await {
            Ok(fetched) => fetches.push(fetched),
            Err(reason) => {
                report.fail(
                    "jwks.fetch",
                    reason,
                    "make jwks_uri answer quickly over HTTPS",
                    sts::UNREACHABLE,
                );
                return None;
            }
        }
    }
    let first = &fetches[0];
    if !same_host {
        if let Some(Err(reason)) = first.tls.as_ref().map(|t| &t.verified) {
            report.fail(
                "jwks.tls",
                format!("the key set's certificate is not trusted: {reason}"),
                "serve jwks_uri with a certificate from a public CA",
                sts::UNREACHABLE,
            );
        }
    }
    if let Some(bad) = fetches.iter().find(|f| f.status != http::StatusCode::OK) {
        report.fail(
            "jwks.status",
            format!("answered {}", bad.status),
            "serve the key set with 200 at jwks_uri",
            sts::UNREACHABLE,
        );
        return None;
    }
    report.pass("jwks.status", format!("200 on {} fetches", fetches.len()));
    let slowest = fetches.iter().map(|f| f.elapsed).max().unwrap_or_default();
    check_latency(report, "jwks.latency", slowest);
    check_caching(report, "jwks.caching", &first.headers);
    let keys = keys::check_key_set(report, &first.body);
    let kid_sets: Vec<Vec<String>> = fetches
        .iter()
        .map(|f| {
            let mut kids: Vec<String> = serde_json::from_slice::<Value>(&f.body)
                .ok()
                .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
                .unwrap_or_default()
                .iter()
                .map(|k| k.get("kid").map(Value::to_string).unwrap_or_else(|| k.to_string()))
                .collect();
            kids.sort();
            kids
        })
        .collect();
    if kid_sets.windows(2).all(|w| w[0] == w[1]) {
        report.pass(
            "jwks.consistency",
            format!("{} fetches returned the same keys", fetches.len()),
        );
    } else {
        report.warn(
            "jwks.consistency",
            "successive fetches returned different key sets (replicas out of sync?)",
            "make every replica serve the same keys; publish new keys before signing with them",
            Some(sts::NOT_VALIDATED),
        );
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_headers_that_defeat_caches() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.append(*k, v.parse().unwrap());
            }
            map
        };
        assert!(cache_problem(&headers(&[("cache-control", "no-cache")])).is_some());
        assert!(cache_problem(&headers(&[("cache-control", "public, max-age=0")])).is_some());
        assert!(cache_problem(&headers(&[("cache-control", "no-store, must-revalidate")])).is_some());
        assert!(cache_problem(&headers(&[("pragma", "no-cache")])).is_some());
        assert!(cache_problem(&headers(&[("cache-control", "public, max-age=300")])).is_none());
        assert!(cache_problem(&headers(&[(
            "cache-control",
            "max-age=86400, public, must-revalidate, no-transform"
        )]))
        .is_none());
        assert!(cache_problem(&headers(&[])).is_none());
    }
}
