//! Trust policy checks: what STS decides after the token verified — the provider's client
//! ID list, then the role's `sts:AssumeRoleWithWebIdentity` statements and conditions.
//!
//! STS checks the token's audience against the provider first (InvalidIdentityToken,
//! "Incorrect token audience") and only then the role's trust policy (AccessDenied):
//! the report keeps that order, and says which of the two refuses the token.

use serde_json::Value;

use super::escape::quote;
use super::report::{Report, Sts};
use super::statement::{claim_values, evaluate, label, names_action, provider_name, Verdict};

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
    use crate::doctor::report::Status;
    use serde_json::json;

    const ISSUER: &str = "https://gitlab.example.com";

    fn run(policy: Value, claims: Value, provider_audiences: &[&str]) -> Report {
        let mut report = Report::default();
        let audiences: Vec<String> = provider_audiences.iter().map(|a| a.to_string()).collect();
        check_policy(&mut report, &claims, ISSUER, Some(&policy.to_string()), &audiences);
        report
    }

    fn allow(condition: Value) -> Value {
        json!({
            "Effect": "Allow",
            "Principal": {"Federated": ["arn:aws:iam::1:oidc-provider/other.example", "arn:aws:iam::1:oidc-provider/gitlab.example.com"]},
            "Action": "sts:*",
            "Condition": condition,
        })
    }

    #[test]
    fn a_single_statement_object_with_a_wildcard_action_and_a_principal_list() {
        let policy = json!({"Statement": allow(json!({"StringEquals": {"GITLAB.EXAMPLE.COM:AUD": "sts"}}))});
        let report = run(policy, json!({"aud": "sts", "sub": "s"}), &[]);
        assert_eq!(report.get("policy.statements").unwrap().status, Status::Pass);
        assert!(
            report.get("policy.audience_condition").is_none(),
            "keys are case-insensitive"
        );
    }

    #[test]
    fn values_are_case_sensitive_and_request_keys_are_not_evaluated() {
        let policy = json!({"Statement": [allow(json!({
            "StringEquals": {"gitlab.example.com:aud": "sts", "aws:SourceIp": "203.0.113.7"},
            "Bool": {"aws:MultiFactorAuthPresent": "true"},
        }))]});
        let report = run(policy.clone(), json!({"aud": "sts"}), &[]);
        assert_eq!(report.get("policy.statements").unwrap().status, Status::Pass);
        let skipped = report.get("policy.operators").unwrap();
        assert_eq!(skipped.status, Status::Warn);
        assert!(skipped.message.contains("aws:SourceIp") && skipped.message.contains("Bool"));
        let report = run(policy, json!({"aud": "STS"}), &[]);
        let refused = report.get("policy.statements").unwrap();
        assert_eq!(refused.sts_error, Some(Sts::AccessDenied));
        assert!(
            refused.message.contains(r#"the token's aud is ["STS"]"#),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_key_of_another_provider_and_a_policy_without_the_action() {
        let policy =
            json!({"Statement": [allow(json!({"StringEquals": {"token.actions.githubusercontent.com:sub": "x"}}))]});
        let report = run(policy, json!({"sub": "x"}), &[]);
        let refused = report.get("policy.statements").unwrap();
        assert!(
            refused.message.contains("is not a key of this provider"),
            "{}",
            refused.message
        );
        let policy = json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Principal": "*"}]});
        let report = run(policy, json!({"sub": "x"}), &[]);
        assert!(report
            .get("policy.statements")
            .unwrap()
            .message
            .contains("no statement allows"));
        let report = run(json!({"Version": "2012-10-17"}), json!({}), &[]);
        assert_eq!(report.get("policy.parse").unwrap().status, Status::Fail);
    }

    #[test]
    fn the_provider_audience_comes_first_and_stops_the_policy() {
        let policy = json!({"Statement": [allow(json!({}))]});
        let report = run(policy.clone(), json!({"aud": ["a", "b"]}), &["c"]);
        assert_eq!(
            report.get("policy.provider_audience").unwrap().sts_error,
            Some(Sts::Audience)
        );
        assert_eq!(report.get("policy.statements").unwrap().status, Status::Skip);
        let report = run(policy, json!({"aud": ["a", "b"]}), &["c", "b"]);
        assert_eq!(report.get("policy.provider_audience").unwrap().status, Status::Pass);
        assert_eq!(report.get("policy.statements").unwrap().status, Status::Pass);
    }
}
