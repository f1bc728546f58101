//! Thumbprint checks: the SHA-1 of the top CA certificate a host serves, as IAM computes
//! it, against the provider's list; and whether IAM would use thumbprints at all.
//!
//! AWS's procedure takes the last certificate the server sends (`openssl s_client
//! -showcerts`); the doctor takes the last one that is a CA, so a server that sends its
//! leaf last is not mistaken for one. IAM trusts a chain to a public root on its own and
//! then ignores thumbprints; public means webpki-roots here, whatever `--ca-file` says.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::net::TlsFacts;
use super::numeric_date::{days_until, rfc3339, unix};
use super::report::{Report, Sts};

/// A top intermediate this close to expiry is a warning: the chain is about to change.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whose chain a check is about: its check ids and how messages name the host.
#[derive(Clone, Copy, Debug)]
pub(super) struct Whose {
    pub thumbprint: &'static str,
    pub expiry: &'static str,
    pub host: &'static str,
}

pub(super) const ISSUER: Whose = Whose {
    thumbprint: "tls.thumbprint",
    expiry: "tls.thumbprint_expiry",
    host: "the issuer's host",
};
pub(super) const KEY_SET: Whose = Whose {
    thumbprint: "jwks.thumbprint",
    expiry: "jwks.thumbprint_expiry",
    host: "jwks_uri's host",
};

/// SHA-1 of a certificate's DER, lowercase hex without colons (IAM's form).
pub fn sha1_hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A thumbprint as typed: either case, colons and spaces allowed (openssl prints colons).
pub fn normalise(input: &str) -> String {
    input
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The last certificate of the served chain that is a CA.
fn top_ca<'a>(chain: &'a [CertificateDer<'static>]) -> Option<&'a CertificateDer<'static>> {
    chain.iter().skip(1).rev().find(|der| {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, cert)| cert.is_ca())
            .unwrap_or(false)
    })
}

/// Whether the served chain verifies for `host` against the public roots (webpki-roots).
pub fn publicly_trusted(chain: &[CertificateDer<'static>], host: &str, now: SystemTime) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return false;
    };
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::material::provider()).build()
    else {
        return false;
    };
    let now = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .is_ok()
}

/// Reports the thumbprint of `facts`' chain for `host`; returns whether the chain leads
/// to a public root (`None` without TLS).
pub(super) fn check_thumbprint(
    report: &mut Report,
    whose: Whose,
    host: &str,
    facts: Option<&TlsFacts>,
    thumbprints: &[String],
    now: SystemTime,
) -> Option<bool> {
    let facts = facts?;
    let public = publicly_trusted(&facts.chain, host, now);
    let Some(top) = top_ca(&facts.chain) else {
        report.warn(
            whose.thumbprint,
            format!(
                "{} {host} sends no CA certificate after its leaf: there is no thumbprint to compute",
                whose.host
            ),
            "serve the full chain (leaf first, then intermediates)",
            (!public && !thumbprints.is_empty()).then_some(Sts::Thumbprint),
        );
        return Some(public);
    };
    let hex = sha1_hex(top);
    let parsed = x509_parser::parse_x509_certificate(top).ok().map(|(_, c)| c);
    let subject = parsed.as_ref().map(|c| c.subject().to_string()).unwrap_or_default();
    let iam = if public {
        "the chain leads to a public root: IAM trusts the CA and does not use thumbprints"
    } else {
        "the chain leads to no public root: IAM validates it by the provider's thumbprints"
    };
    let computed = format!(
        "{} {host}: top CA {subject}, SHA-1 {hex} (lowercase hex); {iam}",
        whose.host
    );
    let listed: Vec<String> = thumbprints.iter().map(|t| normalise(t)).collect();
    match (listed.is_empty(), listed.contains(&hex), public) {
        (_, true, _) | (true, _, true) => report.pass(whose.thumbprint, computed),
        // The provider's list is unknown: say what to register, without guessing a fault.
        (true, _, false) => report.pass(
            whose.thumbprint,
            format!("{computed}, which must include this one (pass --thumbprint to compare)"),
        ),
        (false, false, true) => report.warn(
            whose.thumbprint,
            format!("{computed}; it is not in --thumbprint [{}]", listed.join(", ")),
            format!("harmless to IAM today, but STS implementations that check thumbprints refuse it: add {hex}"),
            None,
        ),
        (false, false, false) => report.fail(
            whose.thumbprint,
            format!(
                "{computed}; it is not in the provider's thumbprints [{}]",
                listed.join(", ")
            ),
            format!("add {hex} to the provider's thumbprints (aws iam update-open-id-connect-provider-thumbprint)"),
            Sts::Thumbprint,
        ),
    }
    if let Some(cert) = parsed {
        let not_after = cert.validity().not_after.timestamp();
        let days = days_until(not_after, unix(now));
        if days < EXPIRY_WARNING_DAYS {
            let when = if not_after <= unix(now) {
                format!("expired at {}", rfc3339(not_after))
            } else {
                format!("expires at {} (in {days} day(s))", rfc3339(not_after))
            };
            report.warn(
                whose.expiry,
                format!("the top CA certificate {when}"),
                "the chain, and so the thumbprint, will change: register the new one before it does",
                (!public).then_some(Sts::Thumbprint),
            );
        } else {
            report.pass(
                whose.expiry,
                format!("the top CA certificate is valid until {}", rfc3339(not_after)),
            );
        }
    }
    Some(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_thumbprints_compare_in_any_case_with_colons() {
        assert_eq!(normalise("9E:99:A4 8A"), "9e99a48a");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
