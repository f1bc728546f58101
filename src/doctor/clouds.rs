//! Cloud checks (`--cloud`): the limits Azure's federated credentials and GCP's workload
//! identity federation add to what AWS STS needs, named with their own error codes.

use serde_json::Value;

use super::escape::quote;
use super::options::Cloud;
use super::report::{Report, Sts};

const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";
const AZURE_ISSUER_MAX: usize = 600;
const GCP_MAX_AUDIENCES: usize = 10;

/// What the cloud checks look at, gathered by the rest of the run.
pub(super) struct Seen<'a> {
    pub issuer: &'a str,
    /// The token's header `alg` and claims, when a token was given and decodes.
    pub alg: Option<&'a str>,
    pub claims: Option<&'a Value>,
    pub keys: Option<&'a [Value]>,
    /// Whether the issuer's and jwks_uri's chains lead to a public root; `None` when
    /// neither was seen.
    pub public_ca: Option<bool>,
    pub provider_audiences: &'a [String],
}

fn audiences(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn shown(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", "))
}

pub(super) fn check_clouds(report: &mut Report, cloud: Cloud, seen: &Seen<'_>) {
    if cloud.includes(Cloud::Azure) {
        check_azure(report, seen);
    }
    if cloud.includes(Cloud::Gcp) {
        check_gcp(report, seen);
    }
}

fn check_public_ca(report: &mut Report, id: &'static str, seen: &Seen<'_>, who: &str, sts: Sts) {
    match seen.public_ca {
        Some(true) => report.pass(id, "the issuer's certificates chain to a public root"),
        Some(false) => report.fail(
            id,
            format!("the issuer's (or jwks_uri's) certificate is self-signed or from a private CA: {who} accepts only certificates from public CAs"),
            "serve the issuer with a certificate from a public CA (jwks-edge with ACME)",
            sts,
        ),
        None => report.skip(id, "the issuer's TLS chain was not seen"),
    }
}

fn check_azure(report: &mut Report, seen: &Seen<'_>) {
    match seen.alg {
        Some("RS256") => report.pass("azure.alg", "the token is signed with RS256"),
        Some(alg) => report.fail(
            "azure.alg",
            format!(
                "the token is signed with {}: Azure federated credentials accept only RS256",
                quote(alg)
            ),
            "have the IdP sign these tokens with RS256",
            Sts::AzureSignature,
        ),
        None => report.skip("azure.alg", "no token to check"),
    }
    if let Some(keys) = seen.keys {
        let rsa = keys
            .iter()
            .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
            .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
            .filter(|k| k.get("alg").and_then(Value::as_str).is_none_or(|a| a == "RS256"))
            .count();
        if rsa == 0 {
            report.fail(
                "azure.keys",
                "the key set has no RSA signing key usable with RS256",
                "publish an RSA key (RS256) and sign with it",
                Sts::AzureSignature,
            );
        } else {
            report.pass("azure.keys", format!("{rsa} RSA key(s) usable with RS256"));
        }
    }
    let length = seen.issuer.chars().count();
    if length > AZURE_ISSUER_MAX {
        report.fail(
            "azure.issuer",
            format!("the issuer URL has {length} characters: a federated credential's issuer holds at most {AZURE_ISSUER_MAX}"),
            "publish the issuer at a shorter URL",
            Sts::AzureNoMatch,
        );
    } else {
        match seen.claims.map(|c| c.get("iss").and_then(Value::as_str)) {
            Some(Some(iss)) if iss != seen.issuer => report.fail(
                "azure.issuer",
                format!(
                    "iss is {}, not {} (Azure compares exactly, case and trailing slash included)",
                    quote(iss),
                    quote(seen.issuer)
                ),
                "set the federated credential's issuer to exactly the token's iss",
                Sts::AzureNoMatch,
            ),
            _ => report.pass(
                "azure.issuer",
                format!("{length} characters (at most {AZURE_ISSUER_MAX})"),
            ),
        }
    }
    match seen.claims.map(audiences) {
        Some(aud) if aud.iter().any(|a| a == AZURE_AUDIENCE) => {
            report.pass("azure.audience", format!("aud includes {AZURE_AUDIENCE}"))
        }
        Some(aud) => report.fail(
            "azure.audience",
            format!("aud {} lacks {AZURE_AUDIENCE}, the audience federated credentials expect", shown(&aud)),
            format!("request the token for {AZURE_AUDIENCE} (or set the federated credential's audience to the token's aud)"),
            Sts::AzureNoMatch,
        ),
        None => report.skip("azure.audience", "no token to check"),
    }
    check_public_ca(report, "azure.tls", seen, "Microsoft Entra ID", Sts::AzureEndpoint);
}

fn check_gcp(report: &mut Report, seen: &Seen<'_>) {
    check_public_ca(report, "gcp.tls", seen, "Google's STS", Sts::GcpInvalidGrant);
    let allowed = seen.provider_audiences;
    if allowed.len() > GCP_MAX_AUDIENCES {
        report.fail(
            "gcp.audiences",
            format!(
                "{} allowed audiences: a workload identity pool provider accepts at most {GCP_MAX_AUDIENCES}",
                allowed.len()
            ),
            "keep at most 10 allowed audiences (one provider per group of clients)",
            Sts::GcpInvalidGrant,
        );
        return;
    }
    let Some(aud) = seen.claims.map(audiences) else {
        report.skip("gcp.audiences", "no token to check");
        return;
    };
    if allowed.is_empty() {
        // Without allowed audiences, GCP expects the provider's own resource name.
        if aud.iter().any(|a| a.contains("iam.googleapis.com/projects/")) {
            report.pass(
                "gcp.audiences",
                format!("aud {} names a workload identity provider", shown(&aud)),
            );
        } else {
            report.warn(
                "gcp.audiences",
                format!("aud {}: with no allowed audiences, GCP expects https://iam.googleapis.com/projects/…/providers/…", shown(&aud)),
                "pass --provider-audience with the provider's allowed audiences, or request the token for the provider's resource name",
                Some(Sts::GcpInvalidGrant),
            );
        }
    } else if aud.iter().any(|a| allowed.contains(a)) {
        report.pass("gcp.audiences", format!("aud {} is an allowed audience", shown(&aud)));
    } else {
        report.fail(
            "gcp.audiences",
            format!(
                "aud {} is none of the allowed audiences {}",
                shown(&aud),
                shown(allowed)
            ),
            "add the token's aud to the provider's allowed audiences",
            Sts::GcpInvalidGrant,
        );
    }
}
