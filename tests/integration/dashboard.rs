//! The Grafana dashboard in deploy/grafana/: every metric its queries read exists in a
//! running proxy's `/metrics`, every metric the proxy declares has a panel, and every
//! query is PromQL that promtool accepts.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;

use crate::alerts::promtool;
use crate::support::*;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/jwks-edge.json");
const GITLAB: &str = "gitlab.example.com";

/// The sample names a real proxy declares on its admin listener: HTTPS on, one GitLab
/// issuer, its documents fetched and its key set requested once, and a publish sink
/// (unreachable: its metrics are declared whether or not an upload succeeded).
pub(crate) async fn declared_by_a_running_proxy() -> BTreeSet<String> {
    let idp = gitlab_idp().await;
    let certs = Arc::new(TestCerts::for_hosts(&[GITLAB]));
    let proxy = Proxy::builder()
        .issuer(Issuer::gitlab(&idp))
        .tls(certs)
        .publish_to("s3://jwks-edge/dashboard", "http://127.0.0.1:9")
        .start()
        .await;
    until_served(proxy.plain.unwrap(), GITLAB, "/oauth/discovery/keys").await;
    let reply = get(proxy.admin, &Transport::Plain, "localhost", "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let declared = declared_samples(&text);
    assert!(
        declared.contains("jwks_edge_requests_total") && declared.contains("jwks_edge_document_age_seconds"),
        "{text}"
    );
    proxy.shutdown().await;
    declared
}

/// Fails, naming the metric and where it is used, when `query` reads a metric the proxy
/// does not declare.
pub(crate) fn assert_declared(declared: &BTreeSet<String>, query: &str, source: &str) {
    let names = metric_names(query);
    assert!(!names.is_empty(), "{source}: no metric found in {query:?}");
    for name in names {
        assert!(
            declared.contains(&name),
            "{source}: {query:?} reads {name}, which a running proxy's /metrics does not declare"
        );
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Each query's text and where it is: the panels' targets, then the template variables'
/// `label_values(SELECTOR, LABEL)`, of which the selector is the PromQL.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .expect("a query variable has a query");
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _label)| selector)
            .unwrap_or_else(|| {
                panic!(
                    "variable {:?}: expected label_values(SELECTOR, LABEL)",
                    variable["name"]
                )
            });
        queries.push((format!("variable {:?}", variable["name"]), selector.to_owned()));
    }
    queries
}

#[tokio::test]
async fn every_metric_the_dashboard_reads_exists_in_a_running_proxy() {
    let declared = declared_by_a_running_proxy().await;
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() > 20, "{queries:?}");
    for (source, query) in &queries {
        assert_declared(&declared, query, source);
    }
    // And every metric the proxy declares has a panel (histograms by their buckets).
    let read: BTreeSet<String> = queries.iter().flat_map(|(_, q)| metric_names(q)).collect();
    for name in &declared {
        let family = name.strip_suffix("_sum").or_else(|| name.strip_suffix("_count"));
        if family.is_some_and(|f| declared.contains(&format!("{f}_bucket"))) {
            continue;
        }
        assert!(read.contains(name), "the dashboard has no panel reading {name}");
    }
}

#[test]
fn the_dashboard_s_panels_are_laid_out_and_use_the_datasource_variable() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "jwks-edge");
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().expect("a numeric id")),
            "duplicate id, {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: gridPos {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}

#[test]
fn the_dashboard_s_queries_are_promql_that_promtool_accepts() {
    // Each query as a recording rule, Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, query)) in queries(&dashboard()).iter().enumerate() {
        let expanded = query
            .replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$issuer", ".*");
        assert!(!expanded.contains('$'), "an unexpanded variable in {query:?}");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::json!(expanded)
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dashboard.rules.yml"), &rules).unwrap();
    let (ok, said) = promtool(tmp.path(), &["check", "rules", "dashboard.rules.yml"]);
    assert!(ok, "promtool check rules on the dashboard's queries:\n{said}\n{rules}");
}
