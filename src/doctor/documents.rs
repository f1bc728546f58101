//! Checks of the two documents: status, latency, caching headers, content.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Uri};
use serde_json::Value;

use super::escape::quote;
use super::keys;
use super::net::{host_of, Fetched, Net};
use super::options::Options;
use super::report::{Report, Sts};
use super::thumbprint::{check_thumbprint, KEY_SET};
use super::transport::{check_reachable, Host};

/// Discovery or key set latency over this is a warning (STS gives up near 5 s).
const SLOW: Duration = Duration::from_secs(1);
const STS_LIMIT: Duration = Duration::from_secs(5);

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

fn check_latency(report: &mut Report, id: &'static str, elapsed: Duration) {
    if elapsed >= STS_LIMIT {
        report.fail(
            id,
            format!("took {elapsed:?}; STS gives up near 5 s"),
            "serve the document from a cache in front of the IdP (jwks-edge)",
            Sts::Unreachable,
        );
    } else if elapsed > SLOW {
        report.warn(
            id,
            format!("took {elapsed:?}"),
            "serve the document from memory; STS gives up near 5 s",
            Some(Sts::Unreachable),
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
            Some(Sts::Throttled),
        ),
        None => report.pass(id, "cacheable (no no-cache, no-store, max-age=0 or Pragma)"),
    }
}

/// Returns `jwks_uri` when the doctor can fetch it (http or https), even when it failed a
/// check, so that the key set is examined too.
pub(super) fn check_discovery(report: &mut Report, issuer: &str, fetched: &Fetched) -> Option<Uri> {
    if fetched.status != http::StatusCode::OK {
        report.fail(
            "discovery.status",
            format!("answered {}", fetched.status),
            "serve the discovery document with 200 at <issuer>/.well-known/openid-configuration",
            Sts::Unreachable,
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
                Sts::Unreachable,
            );
            return None;
        }
    };
    report.pass("discovery.json", "a JSON object");
    match doc.get("issuer").and_then(Value::as_str) {
        Some(found) if found == issuer => report.pass("discovery.issuer", "issuer equals the URL exactly"),
        Some(found) => report.fail(
            "discovery.issuer",
            format!(
                "issuer is {}, not {} (compared exactly, trailing slash included)",
                quote(found),
                quote(issuer)
            ),
            "make the IdP's issuer (GitLab external_url, Keycloak frontend URL, --service-account-issuer) equal the public URL",
            Sts::NoProvider,
        ),
        None => report.fail(
            "discovery.issuer",
            "the document has no issuer",
            "serve a complete discovery document",
            Sts::Unreachable,
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
                Sts::Unreachable,
            );
            return None;
        }
    };
    let Ok(uri) = jwks_uri.parse::<Uri>() else {
        report.fail(
            "discovery.jwks_uri",
            format!("jwks_uri {} is not a URL", quote(jwks_uri)),
            "serve a discovery document whose jwks_uri is the key set's public https URL",
            Sts::Unreachable,
        );
        return None;
    };
    match (uri.scheme_str(), uri.host().is_some()) {
        (Some("https"), true) => {
            report.pass("discovery.jwks_uri", format!("jwks_uri is {}", quote(jwks_uri)));
            Some(uri)
        }
        (scheme, has_host) => {
            report.fail(
                "discovery.jwks_uri",
                format!("jwks_uri {} is not an https URL", quote(jwks_uri)),
                "rewrite jwks_uri to the public URL (jwks-edge does this)",
                Sts::Unreachable,
            );
            (scheme == Some("http") && has_host).then_some(uri)
        }
    }
}

/// What the key set checks found that later checks use.
#[derive(Default)]
pub(super) struct KeySet {
    pub keys: Option<Vec<Value>>,
    /// Whether jwks_uri's chain leads to a public root, when it is on another host.
    pub public_ca: Option<bool>,
}

pub(super) async fn check_jwks(
    report: &mut Report,
    net: &Net,
    issuer_url: &Uri,
    jwks_uri: &Uri,
    options: &Options,
    now: SystemTime,
) -> KeySet {
    // The same host is already resolved, checked and pinned: the fetch reuses that address.
    let same_host = jwks_uri.authority() == issuer_url.authority();
    if !same_host && !check_reachable(report, net, jwks_uri, Host::KeySet).await {
        report.skip("jwks.fetch", "the key set's host is not reachable");
        return KeySet::default();
    }
    let mut fetches = Vec::new();
    for _ in 0..options.jwks_fetches.max(1) {
        match net.get(jwks_uri).await {
            Ok(fetched) => fetches.push(fetched),
            Err(reason) => {
                report.fail(
                    "jwks.fetch",
                    reason.to_string(),
                    "make jwks_uri answer quickly over HTTPS",
                    Sts::Unreachable,
                );
                return KeySet::default();
            }
        }
    }
    let first = &fetches[0];
    let mut public_ca = None;
    if !same_host {
        if let Some(Err(reason)) = first.tls.as_ref().map(|t| &t.verified) {
            report.fail(
                "jwks.tls",
                format!("the key set's certificate is not trusted: {reason}"),
                "serve jwks_uri with a certificate from a public CA",
                Sts::Unreachable,
            );
        }
        public_ca = check_thumbprint(
            report,
            KEY_SET,
            host_of(jwks_uri),
            first.tls.as_ref(),
            &options.thumbprints,
            now,
        );
    }
    if let Some(bad) = fetches.iter().find(|f| f.status != http::StatusCode::OK) {
        report.fail(
            "jwks.status",
            format!("answered {}", bad.status),
            "serve the key set with 200 at jwks_uri",
            Sts::Unreachable,
        );
        return KeySet { keys: None, public_ca };
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
            Some(Sts::NotValidated),
        );
    }
    KeySet { keys, public_ca }
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
