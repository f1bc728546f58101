//! Trust policy checks: what STS decides after the token verified — the provider's client
//! ID list, then the role's `sts:AssumeRoleWithWebIdentity` statements and conditions.
//!
//! STS checks the token's audience against the provider first (InvalidIdentityToken,
//! "Incorrect token audience") and only then the role's trust policy (AccessDenied):
//! the report keeps that order, and says which of the two refuses the token.

use serde_json::Value;

use super::conditions::Operator;
use super::escape::quote;
use super::report::{Report, Sts};

const ACTION: &str = "sts:assumerolewithwebidentity";

/// The IAM OIDC provider's name for an issuer: its URL without `https://` (host and path).
pub fn provider_name(issuer: &str) -> String {
    let bare = issuer.strip_prefix("https://").unwrap_or(issuer);
    bare.trim_end_matches('/').to_owned()
}

/// A claim's values as IAM compares them: a string, each string of a list, or a scalar's
/// JSON text; `None` when the token lacks it.
fn claim_values(claims: &Value, name: &str) -> Option<Vec<String>> {
    let value = claims
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)?;
    Some(match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Value::Null => return None,
        other => vec![other.to_string()],
    })
}

/// The value of condition key `<provider>:<claim>` for this token. IAM fills `:aud` from
/// `azp` when the token has one, and `:oaud` with the `aud` values then.
fn key_values(claims: &Value, claim: &str) -> Option<Vec<String>> {
    let azp = claim_values(claims, "azp");
    match claim {
        "aud" => azp.or_else(|| claim_values(claims, "aud")),
        "oaud" => azp.and_then(|_| claim_values(claims, "aud")),
        other => claim_values(claims, other),
    }
}

/// A string or a list of strings, as policy elements are written.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

fn names_action(statement: &Value) -> bool {
    strings(statement.get("Action"))
        .iter()
        .any(|a| super::conditions::like(&a.to_ascii_lowercase(), ACTION))
}

/// Whether `arn` is `arn:aws:iam::ACCOUNT:oidc-provider/<provider>` (any partition).
fn names_provider(arn: &str, provider: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iam"), Some(""), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    resource
        .strip_prefix("oidc-provider/")
        .is_some_and(|name| name.eq_ignore_ascii_case(provider))
}

/// What one statement says about the token.
enum Verdict {
    /// Principal and every condition match.
    Matches,
    /// The first reason it does not.
    Fails(String),
}

/// Evaluates one statement; `unevaluated` collects the operators the doctor skipped.
fn evaluate(statement: &Value, claims: &Value, provider: &str, unevaluated: &mut Vec<String>) -> Verdict {
    let federated = strings(statement.get("Principal").and_then(|p| p.get("Federated")));
    if !federated.iter().any(|arn| names_provider(arn, provider)) {
        return Verdict::Fails(format!(
            "Principal.Federated is {}, not the provider arn:aws:iam::ACCOUNT:oidc-provider/{provider}",
            if federated.is_empty() {
                "absent".to_owned()
            } else {
                federated.iter().map(|f| quote(f)).collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let prefix = format!("{}:", provider.to_ascii_lowercase());
    let Some(conditions) = statement.get("Condition").and_then(Value::as_object) else {
        return Verdict::Matches;
    };
    // Operators and keys are AND'd: the first that fails is the reason.
    for (name, block) in conditions {
        let Some(operator) = Operator::parse(name) else {
            unevaluated.push(name.clone());
            continue;
        };
        let Some(block) = block.as_object() else { continue };
        for (key, values) in block {
            let values = strings(Some(values));
            let lower = key.to_ascii_lowercase();
            let claim = lower.strip_prefix(&prefix);
            // Request context (`aws:SourceIp`, `sts:RoleSessionName`…) is not in the token.
            if claim.is_none() && (lower.starts_with("aws:") || lower.starts_with("sts:")) {
                unevaluated.push(format!("{name} {key}"));
                continue;
            }
            let actual = claim.and_then(|c| key_values(claims, c));
            if operator.holds(actual.as_deref(), &values) {
                continue;
            }
            let shown = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
            let found = match (&claim, &actual) {
                (None, _) => format!(
                    "{} is not a key of this provider (its keys start with {prefix})",
                    quote(key)
                ),
                (Some(c), None) => format!("the token has no {c}"),
                (Some(c), Some(v)) => format!("the token's {c} is [{}]", shown(v)),
            };
            return Verdict::Fails(format!("{name} {} [{}] fails: {found}", quote(key), shown(&values)));
        }
    }
    Verdict::Matches
}

fn label(index: usize, statement: &Value) -> String {
    match statement.get("Sid").and_then(Value::as_str) {
        Some(sid) => format!("statement {} ({})", index + 1, quote(sid)),
        None => format!("statement {}", index + 1),
    }
}

/// Checks the provider's client IDs (when given), then the trust policy (when given).
pub fn check_policy(
    report: &mut Report,
    claims: &Value,
    issuer: &str,
    policy: Option<&str>,
    provider_audiences: &[String],
) {
    let provider = provider_name(issuer);
    let mut audience_refused = false;
    if !provider_audiences.is_empty() {
        let mut aud = claim_values(claims, "aud").unwrap_or_default();
        aud.extend(claim_values(claims, "azp").unwrap_or_default());
        let shown = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
        if aud.iter().any(|a| provider_audiences.contains(a)) {
            report.pass(
                "policy.provider_audience",
                format!("aud [{}] is one of the provider's client IDs", shown(&aud)),
            );
        } else {
            audience_refused = true;
            report.fail(
                "policy.provider_audience",
                format!(
                    "aud [{}] is none of the provider's client IDs [{}]: STS refuses the token before it reads the trust policy",
                    shown(&aud),
                    shown(provider_audiences)
                ),
                "add the token's aud to the IAM OIDC provider's client ID list (aws iam add-client-id-to-open-id-connect-provider)",
                Sts::Audience,
            );
        }
    }
    let Some(text) = policy else { return };
    let statements = match serde_json::from_str::<Value>(text) {
        Ok(doc) => match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => {
                report.fail(
                    "policy.parse",
                    "the trust policy has no Statement",
                    "pass the role's trust policy document (aws iam get-role --query Role.AssumeRolePolicyDocument)",
                    Sts::AccessDenied,
                );
                return;
            }
        },
        Err(err) => {
            report.fail(
                "policy.parse",
                format!("the trust policy is not JSON: {err}"),
                "pass the role's trust policy document (aws iam get-role --query Role.AssumeRolePolicyDocument)",
                Sts::AccessDenied,
            );
            return;
        }
    };
    let relevant: Vec<(usize, &Value)> = statements.iter().enumerate().filter(|(_, s)| names_action(s)).collect();
    report.pass(
        "policy.parse",
        format!(
            "{} statement(s), {} for sts:AssumeRoleWithWebIdentity",
            statements.len(),
            relevant.len()
        ),
    );
    if audience_refused {
        report.skip(
            "policy.statements",
            "STS stops at the provider's audience check (policy.provider_audience)",
        );
        return;
    }
    let mut unevaluated = Vec::new();
    let mut allowed = None;
    let mut denied = None;
    let mut reasons = Vec::new();
    for (index, statement) in &relevant {
        let deny = statement
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("deny"));
        match evaluate(statement, claims, &provider, &mut unevaluated) {
            Verdict::Matches if deny => denied = denied.or(Some((*index, *statement))),
            Verdict::Matches => allowed = allowed.or(Some((*index, *statement))),
            Verdict::Fails(reason) if !deny => reasons.push(format!("{}: {reason}", label(*index, statement))),
            Verdict::Fails(_) => {}
        }
    }
    let fix = "make a statement's Principal and conditions match the token's claims (see each statement's first failing condition)";
    match (allowed, denied) {
        (_, Some((index, statement))) => report.fail(
            "policy.statements",
            format!(
                "{} (Deny) matches the token: an explicit Deny wins",
                label(index, statement)
            ),
            "narrow or remove the Deny statement",
            Sts::AccessDenied,
        ),
        (Some((index, statement)), None) => {
            report.pass(
                "policy.statements",
                format!("{} allows the token", label(index, statement)),
            );
            let has_aud = statement
                .get("Condition")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|c| c.values())
                .filter_map(Value::as_object)
                .flat_map(|b| b.keys())
                .any(|k| k.eq_ignore_ascii_case(&format!("{provider}:aud")));
            if !has_aud {
                report.warn(
                    "policy.audience_condition",
                    format!("{} has no {provider}:aud condition", label(index, statement)),
                    format!("add \"StringEquals\": {{\"{provider}:aud\": \"<client ID>\"}}, so that tokens minted for other audiences cannot assume the role"),
                    None,
                );
            }
        }
        (None, None) if relevant.is_empty() => report.fail(
            "policy.statements",
            "no statement allows sts:AssumeRoleWithWebIdentity",
            "add an Allow statement for sts:AssumeRoleWithWebIdentity with Principal.Federated naming the provider",
            Sts::AccessDenied,
        ),
        (None, None) => report.fail("policy.statements", reasons.join("; "), fix, Sts::AccessDenied),
    }
    if !unevaluated.is_empty() {
        unevaluated.sort();
        unevaluated.dedup();
        report.warn(
            "policy.operators",
            format!("conditions the doctor does not evaluate: {}", unevaluated.join(", ")),
            "check these conditions by hand",
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_arns_and_audience_keys() {
        assert_eq!(provider_name("https://gitlab.example.com/"), "gitlab.example.com");
        assert!(names_provider(
            "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com",
            "gitlab.example.com"
        ));
        assert!(names_provider(
            "arn:aws-cn:iam::123456789012:oidc-provider/idp.test/realms/x",
            "idp.test/realms/x"
        ));
        assert!(!names_provider(
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
            "gitlab.example.com"
        ));
        let with_azp = json!({"aud": ["a", "b"], "azp": "client"});
        assert_eq!(key_values(&with_azp, "aud"), Some(vec!["client".to_owned()]));
        assert_eq!(
            key_values(&with_azp, "oaud"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        let plain = json!({"aud": "sts.amazonaws.com", "project_id": 42});
        assert_eq!(key_values(&plain, "aud"), Some(vec!["sts.amazonaws.com".to_owned()]));
        assert_eq!(key_values(&plain, "oaud"), None);
        assert_eq!(key_values(&plain, "project_id"), Some(vec!["42".to_owned()]));
    }
}
