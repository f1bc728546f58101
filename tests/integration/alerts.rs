//! The alert rules in deploy/prometheus/: valid for promtool, unit-tested by it (each
//! alert firing and not firing), the same in the PrometheusRule, documented in the
//! README, and reading only metrics a running proxy declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::dashboard::{assert_declared, declared_by_a_running_proxy};
use crate::support::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
const RULES: &str = "jwks-edge.rules.yml";
const OPERATOR_RULE: &str = "prometheusrule.yaml";
/// The switch of `JwksEdgeKeySetNotFetched`, and what it reads switched on for every issuer.
const SWITCHED_OFF: &str = r#"jwks_edge_published_keys{issuer=~""}"#;
const SWITCHED_ON: &str = r#"jwks_edge_published_keys{issuer=~".+"}"#;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(DIR).join(name)).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"))
}

/// Runs promtool in `dir` with a bound; returns whether it succeeded and what it said.
pub(crate) fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let program = find_promtool();
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = ChildProcess::spawn(
        Command::new(&program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap()),
    );
    let status = child.exit_within_blocking(Duration::from_secs(60), &format!("promtool {}", args.join(" ")));
    let said = std::fs::read_to_string(&stdout).unwrap() + &std::fs::read_to_string(&stderr).unwrap();
    (status.success(), said)
}

fn find_promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("promtool is not installed (not on PATH nor in /usr/bin): run .ci/install-test-deps, which installs Debian's prometheus package")
        })
}

/// The rules file's lines from `groups:` on.
fn groups(rules: &str) -> &str {
    let start = rules
        .find("\ngroups:\n")
        .expect("the rules file has a top-level groups:")
        + 1;
    &rules[start..]
}

/// Each rule's alert name and its text (up to the next rule).
fn alerts(rules: &str) -> Vec<(String, String)> {
    let mut alerts: Vec<(String, String)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert: ") {
            alerts.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, text)) = alerts.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    alerts
}

/// The `expr:` of each rule: a block scalar (`expr: |`) or a single line.
fn exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        match value.trim() {
            "|" => {
                let block = lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join("\n");
                exprs.push(block);
            }
            inline if !inline.starts_with(['>', '"', '\'']) => exprs.push(inline.to_owned()),
            other => panic!("expr style {other:?} in {line:?}: use `expr: |` or one plain line"),
        }
    }
    exprs
}

#[test]
fn promtool_checks_the_rules_and_the_operator_s_copy_of_them() {
    let dir = Path::new(DIR);
    let (ok, said) = promtool(dir, &["check", "rules", RULES]);
    assert!(ok, "promtool check rules {RULES}:\n{said}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", alerts(&read(RULES)).len())),
        "{said}"
    );
    // The PrometheusRule's spec, as Prometheus would load it from a rules file.
    let spec = read(OPERATOR_RULE);
    let spec = spec.split_once("\nspec:\n").expect("the PrometheusRule has a spec").1;
    let unindented: String = spec
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line).to_owned() + "\n")
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("spec.yml"), unindented).unwrap();
    let (ok, said) = promtool(tmp.path(), &["check", "rules", "spec.yml"]);
    assert!(ok, "promtool check rules on the spec of {OPERATOR_RULE}:\n{said}");
}

#[test]
fn the_prometheus_rule_holds_the_rules_file_verbatim() {
    let expected: String = groups(&read(RULES))
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("  {line}\n")
            }
        })
        .collect();
    let operator = read(OPERATOR_RULE);
    assert!(operator.contains("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"));
    let spec = operator
        .split_once("\nspec:\n")
        .expect("the PrometheusRule has a spec")
        .1;
    if spec != expected {
        let differs = spec
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_owned(), |n| format!("line {} of spec", n + 1));
        panic!(
            "{OPERATOR_RULE} drifted from {RULES} at {differs}: its spec must be the rules file's groups, \
             indented two spaces. Expected spec:\n{expected}"
        );
    }
}

#[test]
fn promtool_tests_show_each_alert_firing_and_not_firing() {
    let (ok, said) = promtool(Path::new(DIR), &["test", "rules", "jwks-edge.tests.yml"]);
    assert!(ok, "promtool test rules jwks-edge.tests.yml:\n{said}");
    // Every alert has a case where it fires and one where it does not, in some tests file.
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in ["jwks-edge.tests.yml", "key-set-not-fetched.tests.yml"] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(name) = line.trim().strip_prefix("alertname: ") {
                match lines.get(i + 1).map(|l| l.trim()) {
                    Some("exp_alerts: []") => quiet.insert(name.to_owned()),
                    Some("exp_alerts:") => firing.insert(name.to_owned()),
                    other => panic!("{file}: alertname {name} followed by {other:?}"),
                };
            }
        }
    }
    for (name, _) in alerts(&read(RULES)) {
        assert!(firing.contains(&name), "no promtool test shows {name} firing");
        assert!(quiet.contains(&name), "no promtool test shows {name} not firing");
    }
}

#[test]
fn the_relying_party_alert_is_off_by_default_and_fires_when_switched_on() {
    let rules = read(RULES);
    assert_eq!(
        rules.matches(SWITCHED_OFF).count(),
        1,
        "README \"Alerts\" says the switch is the one selector {SWITCHED_OFF}"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(RULES), rules.replace(SWITCHED_OFF, SWITCHED_ON)).unwrap();
    std::fs::write(tmp.path().join("on.tests.yml"), read("key-set-not-fetched.tests.yml")).unwrap();
    let (ok, said) = promtool(tmp.path(), &["test", "rules", "on.tests.yml"]);
    assert!(ok, "key-set-not-fetched.tests.yml with the alert switched on:\n{said}");
    // Switched off (as shipped), the same series fire nothing, so these tests fail.
    let (ok, said) = promtool(Path::new(DIR), &["test", "rules", "key-set-not-fetched.tests.yml"]);
    assert!(!ok && said.contains("JwksEdgeKeySetNotFetched"), "{said}");
}

#[test]
fn every_rule_has_a_severity_and_a_runbook_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rules = read(RULES);
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 8, "{alerts:?}");
    for (name, text) in &alerts {
        let anchor = name.to_ascii_lowercase();
        let url = format!("runbook_url: \"https://github.com/example/jwks-edge/blob/main/README.md#{anchor}\"");
        assert_eq!(text.matches("runbook_url:").count(), 1, "{name} has one runbook_url");
        assert!(text.contains(&url), "{name}: expected {url}");
        assert!(
            readme.contains(&format!("\n#### {name}\n")),
            "README has no section \"#### {name}\" for the runbook"
        );
        assert!(
            text.contains("severity: warning") || text.contains("severity: critical"),
            "{name} has a severity"
        );
    }
    // And the README documents no alert that the rules do not have.
    let documented = readme.lines().filter_map(|l| l.strip_prefix("#### JwksEdge")).count();
    assert_eq!(documented, alerts.len(), "README alert sections vs rules");
}

#[tokio::test]
async fn the_rules_read_only_metrics_a_running_proxy_declares() {
    let declared = declared_by_a_running_proxy().await;
    let exprs = exprs(&read(RULES));
    assert_eq!(exprs.len(), alerts(&read(RULES)).len(), "one expr per rule");
    for expr in &exprs {
        assert_declared(&declared, expr, RULES);
    }
}
