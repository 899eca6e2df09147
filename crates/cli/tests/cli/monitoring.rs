//! The monitoring kit in `monitoring/`: promtool accepts the alert rules and passes their unit
//! tests, the dashboard is importable, and every metric and label its queries name is one a
//! running edge or gateway exports.

mod promql;
mod queries;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::gateway_support::{Moat, Usage, curl, start_http_upstream, write_pair};
use crate::telemetry::exposition::{Sample, metrics_address, settled_metrics};
use crate::tunnel::kit::{
    curl_through, joined_with_alice, publish_flags, server_certificate, start_agent, start_edge,
};
use queries::{Query, dashboard_exprs, dashboard_variables, rule_queries, with_variables_filled};

const RULES: &str = "monitoring/prometheus/moat-alerts.yml";
const RULE_TESTS: &str = "monitoring/prometheus/moat-alerts.test.yml";
const DASHBOARD: &str = "monitoring/grafana/moat-dashboard.json";

const HOST: &str = "app.tunnel.test";

/// Labels Prometheus adds to every series it scrapes, so /metrics never shows them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Series that Prometheus makes itself, not moat.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// A file of the repository, by its path from the root.
fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|error| panic!("{DASHBOARD}: {error}"))
}

/// Runs `promtool ARGS` and fails with its output unless it succeeds; `promtool` comes with
/// Debian's `prometheus` package, which .ci/run installs.
fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run promtool ({error}): install Debian's prometheus package \
                 (apt-get install prometheus), as .ci/run does"
            )
        });
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules_their_unit_tests_and_the_dashboard_queries() {
    promtool(&["check", "rules", repo_path(RULES).to_str().unwrap()]);
    promtool(&["test", "rules", repo_path(RULE_TESTS).to_str().unwrap()]);

    // The dashboard's queries as recording rules, so that promtool parses them as PromQL.
    let exprs = dashboard_exprs(&dashboard());
    let mut rules = String::from("groups:\n  - name: moat-dashboard\n    rules:\n");
    for (index, query) in exprs.iter().enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        let expr = serde_json::to_string(&with_variables_filled(&query.expr)).unwrap();
        rules.push_str(&format!(
            "      - record: moat_dashboard:query_{index}\n        expr: {expr}\n"
        ));
    }
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn the_dashboard_is_importable_with_a_prometheus_input_and_its_variables() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    for name in ["DS_PROMETHEUS", "job", "instance", "endpoint"] {
        assert!(
            variables.contains(&name),
            "no variable {name}: {variables:?}"
        );
    }
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "id repeated: {title}"
        );
        let position = &panel["gridPos"];
        let right = position["x"].as_u64().unwrap() + position["w"].as_u64().unwrap();
        assert!(right <= 24, "{title} is wider than the grid");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
    }
}

/// Every sample name of `samples` with the label names seen on it.
fn exported(samples: &[Sample], into: &mut BTreeMap<String, BTreeSet<String>>) {
    for sample in samples {
        into.entry(sample.name.clone())
            .or_default()
            .extend(sample.labels.keys().cloned());
    }
}

/// What is wrong with `query` against the `exported` series: metrics moat does not export, and
/// label names those metrics do not carry.
fn problems(query: &Query, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for selector in &query.selectors {
        let metric = selector.metric.as_str();
        if PROMETHEUS_SERIES.contains(&metric) {
            continue;
        }
        let Some(labels) = exported.get(metric) else {
            // A family's name is not a series: say which series it has.
            let series: Vec<&String> = exported
                .keys()
                .filter(|name| name.starts_with(metric))
                .collect();
            found.push(format!(
                "{}: {metric} is not exported by moat (series with that prefix: {series:?})",
                query.source
            ));
            continue;
        };
        for label in &selector.labels {
            if !TARGET_LABELS.contains(&label.as_str()) && !labels.contains(label) {
                found.push(format!(
                    "{}: {metric} has no label {label} (it has {labels:?})",
                    query.source
                ));
            }
        }
    }
    found
}

/// The histogram whose `_bucket`, `_sum` or `_count` series `name` is, else `name` itself.
fn family(name: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|histogram| exported.contains_key(&format!("{histogram}_bucket")))
        .unwrap_or(name)
        .to_owned()
}

#[test]
fn every_metric_and_label_the_alerts_and_the_dashboard_name_is_exported() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let upstream = start_http_upstream().to_string();

    // An edge with an agent publishing through it (a CA and a CRL uploaded), one request through
    // the tunnel and one client refused for want of a certificate.
    let edge = start_edge(
        dir,
        &[
            "--domain",
            "*.tunnel.test",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let pki = joined_with_alice(dir, "*.tunnel.test");
    server_certificate(dir, &pki.server_ca, HOST, 20);
    std::fs::write(dir.join("clients.crl"), pki.client_ca.crl(&[]).0).unwrap();
    let publish = publish_flags(HOST, &["--crl", "clients.crl"]);
    let publish: Vec<&str> = publish.iter().map(String::as_str).collect();
    let (_agent, _) = start_agent(dir, &edge, "http", &upstream, &publish);
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    let (code, _, stderr) = curl_through(dir, &edge, HOST, "/", &alice);
    assert_eq!(code, 0, "through the edge: {stderr}");
    let (code, _, _) = curl_through(dir, &edge, HOST, "/", &[]);
    assert_ne!(code, 0, "a client without a certificate is refused");

    // A gateway of its own (moat http) with the same CA and CRL: a request and a refusal.
    write_pair(
        dir,
        "server",
        &pki.server_ca.leaf("localhost", Usage::Server, 30),
    );
    let gateway = Moat::serve_mtls(
        dir,
        "http",
        &upstream,
        &[
            "--crl",
            "clients.crl",
            "--metrics-listen",
            "127.0.0.1:0",
            "--audit-log",
            "gateway-audit.jsonl",
        ],
    );
    let url = format!("https://localhost:{}/", gateway.port());
    let trust = ["--cacert", "server-ca.crt"];
    let (code, _, stderr) = curl(dir, &[&trust[..], &alice, &[url.as_str()]].concat());
    assert_eq!(code, 0, "to the gateway: {stderr}");
    let (code, _, _) = curl(dir, &[&trust[..], &[url.as_str()]].concat());
    assert_ne!(code, 0, "a client without a certificate is refused");

    let mut series = BTreeMap::new();
    let edge_metrics = edge.metrics_addr.expect("the edge's metrics address");
    exported(&settled_metrics(dir, edge_metrics), &mut series);
    exported(
        &settled_metrics(dir, metrics_address(&gateway)),
        &mut series,
    );

    let dashboard = dashboard();
    let queries: Vec<Query> = rule_queries(&read(RULES))
        .into_iter()
        .chain(dashboard_exprs(&dashboard))
        .chain(dashboard_variables(&dashboard))
        .collect();
    let problems: Vec<String> = queries
        .iter()
        .flat_map(|query| problems(query, &series))
        .collect();
    assert!(
        problems.is_empty(),
        "the monitoring kit names series moat does not export:\n{}\nexported: {:?}",
        problems.join("\n"),
        series.keys().collect::<Vec<_>>()
    );

    // Not vacuous, and kept whole: the kit reads every metric moat exports.
    let named: BTreeSet<String> = queries
        .iter()
        .flat_map(|query| &query.selectors)
        .map(|selector| family(&selector.metric, &series))
        .collect();
    let unread: BTreeSet<String> = series
        .keys()
        .map(|name| family(name, &series))
        .filter(|family| !named.contains(family))
        .collect();
    assert!(
        unread.is_empty(),
        "metrics no alert or panel reads (add them to the dashboard): {unread:?}"
    );
}
