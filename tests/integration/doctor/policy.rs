//! Trust policies against tokens signed at test time: GitLab- and GitHub-shaped roles,
//! the provider's audience list checked first, and each refusal mapped to STS's error.

use super::*;

const ACCOUNT: &str = "123456789012";

/// The IAM provider's name for the test issuer (`idp.test:PORT`).
fn provider(idp: &Idp) -> String {
    idp.issuer.trim_start_matches("https://").to_owned()
}

fn statement(sid: &str, provider: &str, condition: Value) -> Value {
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    })
}

fn policy(statements: Vec<Value>) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// A role for GitLab CI jobs on main of any project of `group`.
fn gitlab_policy(p: &str) -> String {
    policy(vec![statement(
        "GitLabMain",
        p,
        json!({
            "StringEquals": {format!("{p}:aud"): "sts.amazonaws.com"},
            "StringLike": {format!("{p}:sub"): "project_path:group/*:ref_type:branch:ref:main"},
        }),
    )])
}

fn gitlab_claims(issuer: &str) -> Value {
    let mut claims = claims(issuer);
    claims["namespace_path"] = json!("group");
    claims["project_path"] = json!("group/app");
    claims["ref"] = json!("main");
    claims
}

fn github_claims(issuer: &str) -> Value {
    let mut claims = claims(issuer);
    claims["sub"] = json!("repo:org/app:ref:refs/heads/main");
    claims["repository"] = json!("org/app");
    claims["job_workflow_ref"] = json!("org/app/.github/workflows/deploy.yml@refs/heads/main");
    claims
}

/// A healthy issuer behind a test CA, and the key its tokens are signed with.
struct Case {
    idp: Idp,
    signer: Signer,
    _ca: TestCa,
}

impl Case {
    async fn healthy() -> Case {
        let signer = Signer::new("key-1", 2048);
        let (ca, idp) = healthy(&signer).await;
        Case { idp, signer, _ca: ca }
    }

    async fn run(&self, claims: &Value, policy: &str, provider_audiences: &[&str]) -> Report {
        let mut options = self.idp.options();
        options.token = Some(self.signer.sign(&json!({"alg": "RS256", "kid": "key-1"}), claims));
        options.trust_policy = Some(policy.to_owned());
        options.provider_audiences = provider_audiences.iter().map(|a| a.to_string()).collect();
        doctor::run(options).await
    }
}

fn check<'r>(report: &'r Report, id: &str) -> &'r doctor::Check {
    report
        .get(id)
        .unwrap_or_else(|| panic!("no check {id} in\n{}", report.render(false)))
}

fn assert_denied(report: &Report, needles: &[&str]) {
    let found = check(report, "policy.statements");
    assert_eq!(found.status, Status::Fail, "{}", report.render(false));
    assert_eq!(found.sts_error, Some(doctor::Sts::AccessDenied));
    assert!(
        found.sts_error.unwrap().as_str() == "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    for needle in needles {
        assert!(found.message.contains(needle), "{needle:?} not in {}", found.message);
    }
}

#[tokio::test]
async fn gitlab_and_github_shaped_policies_allow_or_say_which_condition_fails() {
    let case = Case::healthy().await;
    let idp = &case.idp;
    let p = provider(idp);

    // GitLab: allowed, and the report names the statement.
    let report = case.run(&gitlab_claims(&idp.issuer), &gitlab_policy(&p), &[]).await;
    let allowed = check(&report, "policy.statements");
    assert_eq!(allowed.status, Status::Pass, "{}", report.render(false));
    assert!(
        allowed.message.contains("(\"GitLabMain\") allows"),
        "{}",
        allowed.message
    );
    assert!(report.get("policy.audience_condition").is_none());
    assert!(report.worst() < Status::Fail, "{}", report.render(false));

    // A job on another branch: StringLike on sub fails, quoting the token's sub.
    let mut branch = gitlab_claims(&idp.issuer);
    branch["sub"] = json!("project_path:group/app:ref_type:branch:ref:feature");
    let report = case.run(&branch, &gitlab_policy(&p), &[]).await;
    assert_denied(
        &report,
        &[
            "statement 1 (\"GitLabMain\")",
            "StringLike",
            &format!("{p}:sub"),
            "project_path:group/app:ref_type:branch:ref:feature",
        ],
    );

    // GitHub: sub with a wildcard, repository and job_workflow_ref claims by name.
    let github = policy(vec![statement(
        "GitHubDeploy",
        &p,
        json!({
            "StringEquals": {
                format!("{p}:aud"): ["sts.amazonaws.com"],
                format!("{p}:Repository"): "org/app",
            },
            "StringLike": {
                format!("{p}:sub"): "repo:org/*:ref:refs/heads/main",
                format!("{p}:job_workflow_ref"): "org/app/.github/workflows/*@refs/heads/main",
            },
        }),
    )]);
    let report = case.run(&github_claims(&idp.issuer), &github, &[]).await;
    assert_eq!(
        check(&report, "policy.statements").status,
        Status::Pass,
        "{}",
        report.render(false)
    );
    let mut fork = github_claims(&idp.issuer);
    fork["repository"] = json!("fork/app");
    let report = case.run(&fork, &github, &[]).await;
    assert_denied(&report, &["StringEquals", "repository", "\"fork/app\""]);

    // No audience condition: allowed, with a warning that any audience would do.
    let no_aud = policy(vec![statement(
        "NoAudience",
        &p,
        json!({"StringLike": {format!("{p}:sub"): "project_path:group/*"}}),
    )]);
    let report = case.run(&gitlab_claims(&idp.issuer), &no_aud, &[]).await;
    assert_eq!(check(&report, "policy.statements").status, Status::Pass);
    let warning = check(&report, "policy.audience_condition");
    assert_eq!(warning.status, Status::Warn, "{}", report.render(false));
    assert!(warning.message.contains(&format!("{p}:aud")), "{}", warning.message);

    // The role trusts another provider: Principal fails before any condition.
    let other = policy(vec![statement(
        "GitHubOnly",
        "token.actions.githubusercontent.com",
        json!({"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}}),
    )]);
    let report = case.run(&gitlab_claims(&idp.issuer), &other, &[]).await;
    assert_denied(
        &report,
        &[
            "Principal.Federated",
            "oidc-provider/token.actions.githubusercontent.com",
            &format!("oidc-provider/{p}"),
        ],
    );

    // An explicit Deny wins over an Allow that matches.
    let mut deny = statement("NoMain", &p, json!({"StringEquals": {format!("{p}:ref"): "main"}}));
    deny["Effect"] = json!("Deny");
    let both = policy(vec![
        serde_json::from_str::<Value>(&gitlab_policy(&p)).unwrap()["Statement"][0].clone(),
        deny,
    ]);
    let report = case.run(&gitlab_claims(&idp.issuer), &both, &[]).await;
    assert_denied(&report, &["(\"NoMain\") (Deny)", "explicit Deny"]);
}

#[tokio::test]
async fn set_operators_and_if_exists_conditions() {
    let case = Case::healthy().await;
    let idp = &case.idp;
    let p = provider(idp);

    let amr = policy(vec![statement(
        "MfaOnly",
        &p,
        json!({
            "StringEquals": {format!("{p}:aud"): "sts.amazonaws.com"},
            "ForAnyValue:StringEquals": {format!("{p}:amr"): ["mfa", "hwk"]},
        }),
    )]);
    let mut with_mfa = gitlab_claims(&idp.issuer);
    with_mfa["amr"] = json!(["pwd", "mfa"]);
    let report = case.run(&with_mfa, &amr, &[]).await;
    assert_eq!(
        check(&report, "policy.statements").status,
        Status::Pass,
        "{}",
        report.render(false)
    );
    let mut password_only = gitlab_claims(&idp.issuer);
    password_only["amr"] = json!(["pwd"]);
    let report = case.run(&password_only, &amr, &[]).await;
    assert_denied(&report, &["ForAnyValue:StringEquals", "amr", "[\"pwd\"]"]);
    let report = case.run(&gitlab_claims(&idp.issuer), &amr, &[]).await;
    assert_denied(&report, &["the token has no amr"]);

    let if_exists = policy(vec![statement(
        "GroupIfSet",
        &p,
        json!({
            "StringEquals": {format!("{p}:aud"): "sts.amazonaws.com"},
            "StringEqualsIfExists": {format!("{p}:namespace_path"): "group"},
        }),
    )]);
    let mut without = claims(&idp.issuer);
    assert!(without.get("namespace_path").is_none());
    without["sub"] = json!("system:serviceaccount:ci:deployer");
    let report = case.run(&without, &if_exists, &[]).await;
    assert_eq!(
        check(&report, "policy.statements").status,
        Status::Pass,
        "an absent claim passes IfExists:\n{}",
        report.render(false)
    );
    let mut elsewhere = gitlab_claims(&idp.issuer);
    elsewhere["namespace_path"] = json!("other-group");
    let report = case.run(&elsewhere, &if_exists, &[]).await;
    assert_denied(&report, &["StringEqualsIfExists", "\"other-group\""]);
}

#[tokio::test]
async fn the_provider_audience_list_is_checked_before_the_trust_policy() {
    let case = Case::healthy().await;
    let idp = &case.idp;
    let p = provider(idp);
    // The seed case: the trust policy accepts the token, but the provider was registered
    // without its audience.
    let report = case
        .run(
            &gitlab_claims(&idp.issuer),
            &gitlab_policy(&p),
            &["https://gitlab.example.com"],
        )
        .await;
    let text = report.render(false);
    let audience = check(&report, "policy.provider_audience");
    assert_eq!(audience.status, Status::Fail, "{text}");
    assert_eq!(audience.sts_error, Some(doctor::Sts::Audience));
    assert_eq!(
        audience.sts_error.unwrap().as_str(),
        "InvalidIdentityToken: Incorrect token audience"
    );
    assert!(
        audience.message.contains("\"sts.amazonaws.com\""),
        "{}",
        audience.message
    );
    let statements = check(&report, "policy.statements");
    assert_eq!(statements.status, Status::Skip, "{text}");
    let position = |id: &str| report.checks.iter().position(|c| c.id == id).unwrap();
    assert!(
        position("policy.provider_audience") < position("policy.statements"),
        "{text}"
    );
    assert!(!text.contains("AccessDenied"), "the policy is not blamed:\n{text}");

    let report = case
        .run(
            &gitlab_claims(&idp.issuer),
            &gitlab_policy(&p),
            &["https://gitlab.example.com", "sts.amazonaws.com"],
        )
        .await;
    assert_eq!(check(&report, "policy.provider_audience").status, Status::Pass);
    assert_eq!(check(&report, "policy.statements").status, Status::Pass);
}
