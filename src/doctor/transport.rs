//! Checks of the way to the issuer: URL form, name resolution, address class, TLS.

use std::time::SystemTime;

use http::Uri;

use super::net::{self, host_of, port_of, Net};
use super::numeric_date::{days_until, unix};
use super::report::{Report, Sts};
use super::resolver::RouteError;

/// Checks the issuer URL; returns it when the doctor can fetch from it (http or https:
/// a plain-http issuer fails `url.https` but is still examined, so that one run shows
/// every problem).
pub(super) fn check_url(report: &mut Report, issuer: &str) -> Option<Uri> {
    let url = match issuer.parse::<Uri>() {
        Ok(url) if url.scheme().is_some() && url.host().is_some() => url,
        _ => {
            report.fail(
                "url.form",
                format!("{issuer:?} is not an absolute URL"),
                "pass the issuer exactly as tokens carry it in `iss`, such as https://gitlab.example.com",
                Sts::NoProvider,
            );
            return None;
        }
    };
    match url.scheme_str() {
        Some("https") => report.pass("url.https", "https"),
        scheme => {
            report.fail(
                "url.https",
                format!("the scheme is {}", scheme.unwrap_or_default()),
                "relying parties only accept https issuers: publish it over HTTPS (jwks-edge terminates TLS)",
                Sts::Unreachable,
            );
            if scheme != Some("http") {
                return None;
            }
        }
    }
    if issuer.contains(['?', '#']) {
        report.fail(
            "url.form",
            "the issuer URL has a query or fragment",
            "an issuer is scheme, host and path only",
            Sts::NoProvider,
        );
    } else if url.path().len() > 1 && issuer.ends_with('/') {
        report.warn(
            "url.form",
            "the issuer URL ends with a slash; issuers are compared exactly",
            "make sure tokens carry the slash too, or drop it everywhere",
            Some(Sts::NoProvider),
        );
    } else if issuer.ends_with('/') {
        report.warn(
            "url.form",
            "the issuer URL ends with a slash; issuers are compared exactly",
            "use the URL without the trailing slash, as tokens usually carry it",
            Some(Sts::NoProvider),
        );
    } else {
        report.pass("url.form", "no query, fragment or trailing slash");
    }
    if url.port_u16().is_some() {
        report.warn(
            "url.port",
            "the URL has a port",
            "AWS does not accept a port in an identity provider URL: serve it on 443",
            Some(Sts::NoProvider),
        );
    }
    Some(url)
}

/// Whose host `check_reachable` checks: its checks' ids and wording follow.
#[derive(Clone, Copy, Debug)]
pub(super) enum Host {
    Issuer,
    KeySet,
}

impl Host {
    /// The ids of the resolution and address checks, and how messages name the host.
    fn checks(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Host::Issuer => ("dns.resolve", "dns.public", "the issuer's host"),
            Host::KeySet => ("jwks.dns", "jwks.public", "jwks_uri's host"),
        }
    }
}

/// Resolves the URL's host (pinning it), reports its addresses and whether they are
/// public; returns whether the doctor may connect to it.
pub(super) async fn check_reachable(report: &mut Report, net: &Net, url: &Uri, of: Host) -> bool {
    let host = host_of(url);
    let port = port_of(url);
    let (id_dns, id_public, whose) = of.checks();
    let addrs = match net.resolver.resolve(host, port).await {
        Ok(addrs) => addrs,
        Err(reason) => {
            report.fail(
                id_dns,
                reason.to_string(),
                "publish a DNS record for the host",
                Sts::Unreachable,
            );
            return false;
        }
    };
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    report.pass(id_dns, format!("{host} resolves to {}", list.join(", ")));
    let policy = net.resolver.policy();
    let private: Vec<String> = addrs
        .iter()
        .filter_map(|a| policy.class(*a).map(|c| format!("{a} ({c})")))
        .collect();
    if private.is_empty() {
        report.pass(id_public, "every address is public");
        return true;
    }
    if policy.allow_private {
        report.pass(
            id_public,
            format!(
                "non-public addresses allowed by --allow-private: {}",
                private.join(", ")
            ),
        );
        return true;
    }
    match net.resolver.route(host, port).await {
        Ok(used) => {
            report.fail(
                id_public,
                format!(
                    "{whose} {host} also resolves to {}; the doctor connects only to {}",
                    private.join(", "),
                    used.ip()
                ),
                "a relying party may be given a non-public address: publish only public ones",
                Sts::Unreachable,
            );
            true
        }
        Err(RouteError::Refused { addr, class, .. }) => {
            let at = if host == addr.to_string() {
                String::new()
            } else {
                format!(" at {addr}")
            };
            report.fail(
                id_public,
                format!(
                    "refused to connect to {whose} {host}{at} ({class}): a relying party on \
                     the internet cannot reach it, and the doctor does not reach into private \
                     networks unless told to"
                ),
                "publish it on a public address (jwks-edge at the edge); to check a private \
                 deployment from inside its network, pass --allow-private",
                Sts::Unreachable,
            );
            false
        }
        Err(RouteError::Resolve(reason)) => {
            report.fail(
                id_dns,
                reason.to_string(),
                "publish a DNS record for the host",
                Sts::Unreachable,
            );
            false
        }
    }
}

pub(super) async fn check_tls(
    report: &mut Report,
    net: &Net,
    url: &Uri,
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
            Sts::Unreachable,
        ),
    }
    let leaf = facts.chain.first().and_then(|c| {
        x509_parser::parse_x509_certificate(c)
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp())
    });
    if let Some(not_after) = leaf {
        let now = unix(now);
        let days = days_until(not_after, now);
        if not_after <= now {
            report.fail(
                "tls.expiry",
                format!("the certificate expired {} day(s) ago", days.saturating_neg()),
                "renew the certificate",
                Sts::Unreachable,
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
    let mut versions = Vec::new();
    if net.handshake_with(url, &rustls::version::TLS13).await {
        versions.push("TLS 1.3");
    }
    if net.handshake_with(url, &rustls::version::TLS12).await {
        versions.push("TLS 1.2");
    }
    if versions.is_empty() {
        report.fail(
            "tls.versions",
            "neither TLS 1.3 nor TLS 1.2 is offered",
            "enable TLS 1.2 or 1.3",
            Sts::Unreachable,
        );
    } else {
        report.pass("tls.versions", format!("offers {}", versions.join(" and ")));
    }
}
