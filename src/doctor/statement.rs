//! One trust policy statement's verdict on a token: its action, its federated principal
//! and its conditions, with IAM's condition keys for OIDC providers.

use serde_json::Value;

use super::conditions::{like, Operator};
use super::escape::quote;

const ACTION: &str = "sts:assumerolewithwebidentity";

/// The IAM OIDC provider's name for an issuer: its URL without `https://` (host and path).
pub fn provider_name(issuer: &str) -> String {
    let bare = issuer.strip_prefix("https://").unwrap_or(issuer);
    bare.trim_end_matches('/').to_owned()
}

/// A claim's values as IAM compares them: a string, each string of a list, or a scalar's
/// JSON text; `None` when the token lacks it.
pub(super) fn claim_values(claims: &Value, name: &str) -> Option<Vec<String>> {
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
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

pub(super) fn names_action(statement: &Value) -> bool {
    strings(statement.get("Action"))
        .iter()
        .any(|a| like(&a.to_ascii_lowercase(), ACTION))
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
pub(super) enum Verdict {
    /// Principal and every condition match.
    Matches,
    /// The first reason it does not.
    Fails(String),
}

/// Evaluates one statement; `unevaluated` collects the operators the doctor skipped.
pub(super) fn evaluate(statement: &Value, claims: &Value, provider: &str, unevaluated: &mut Vec<String>) -> Verdict {
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

/// How the report names a statement: its position from 1, and its Sid when it has one.
pub(super) fn label(index: usize, statement: &Value) -> String {
    match statement.get("Sid").and_then(Value::as_str) {
        Some(sid) => format!("statement {} ({})", index + 1, quote(sid)),
        None => format!("statement {}", index + 1),
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
