//! The queries the monitoring kit's files hold: each alert rule's `expr` (YAML), and the Grafana
//! dashboard's `expr`s (panels, annotations) and query variables (JSON).

use super::promql::{Selector, selectors};

/// One query of the kit, with where it is for the messages.
#[derive(Debug)]
pub struct Query {
    /// E.g. `rule MoatDown` or `panel "Open connections"`.
    pub source: String,
    /// PromQL, as written (Grafana variables included).
    pub expr: String,
    /// The series it reads.
    pub selectors: Vec<Selector>,
}

/// Every rule's `expr` in a Prometheus rules file, read as moat-alerts.yml writes them: a rule
/// starts with `- alert: NAME` (or `- record:`), and its `expr:` is a block scalar (`|`, `>`)
/// indented below the key or a one-line value. Fails unless every rule yields exactly one, so a
/// layout this reader does not know cannot hide a rule from the check.
pub fn rule_queries(yaml: &str) -> Vec<Query> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut queries = Vec::new();
    let mut rules = 0;
    let mut rule: Option<String> = None;
    let mut next = 0;
    while next < lines.len() {
        let line = lines[next];
        next += 1;
        let content = line.trim_start();
        if let Some(name) = ["- alert:", "- record:"]
            .iter()
            .find_map(|key| content.strip_prefix(key))
        {
            rules += 1;
            rule = Some(name.trim().to_owned());
            continue;
        }
        let Some(value) = content.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        let expr = if value.starts_with(['|', '>']) {
            let mut block = Vec::new();
            while next < lines.len()
                && (lines[next].trim().is_empty() || indent(lines[next]) > indent(line))
            {
                block.push(lines[next].trim());
                next += 1;
            }
            block.join("\n")
        } else {
            value.trim_matches(['"', '\'']).to_owned()
        };
        let name = rule
            .take()
            .unwrap_or_else(|| panic!("an expr outside a rule, or a second one: {expr}"));
        queries.push(Query {
            source: format!("rule {name}"),
            selectors: selectors(&expr),
            expr,
        });
    }
    assert_eq!(
        queries.len(),
        rules,
        "every rule must have one expr this reader finds: {queries:#?}"
    );
    queries
}

/// Every `expr` of the dashboard (panel targets, annotation queries), named by the nearest
/// enclosing title.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<Query> {
    fn walk(value: &serde_json::Value, title: &str, found: &mut Vec<Query>) {
        match value {
            serde_json::Value::Object(object) => {
                let title = ["title", "name"]
                    .iter()
                    .find_map(|key| object.get(*key).and_then(|title| title.as_str()))
                    .unwrap_or(title);
                for (key, child) in object {
                    match (key.as_str(), child.as_str()) {
                        ("expr", Some(expr)) => found.push(Query {
                            source: format!("panel {title:?}"),
                            selectors: selectors(expr),
                            expr: expr.to_owned(),
                        }),
                        _ => walk(child, title, found),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, title, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, "(dashboard)", &mut found);
    found
}

/// The dashboard's query variables. `label_values(SERIES, LABEL)` reads SERIES and needs LABEL
/// on it, so LABEL joins the selectors' labels.
pub fn dashboard_variables(dashboard: &serde_json::Value) -> Vec<Query> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    variables
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            let query = &variable["query"];
            let query = query["query"]
                .as_str()
                .or(query.as_str())
                .unwrap_or_else(|| panic!("variable without a query: {variable}"));
            let found = match query
                .strip_prefix("label_values(")
                .and_then(|inner| inner.strip_suffix(')'))
                .and_then(|inner| inner.rsplit_once(','))
            {
                Some((series, label)) => {
                    let mut found = selectors(series);
                    for selector in &mut found {
                        selector.labels.push(label.trim().to_owned());
                    }
                    found
                }
                None => selectors(query),
            };
            Query {
                source: format!("variable {}", variable["name"]),
                expr: query.to_owned(),
                selectors: found,
            }
        })
        .collect()
}

/// `expr` with Grafana's variables given values Prometheus accepts (intervals `5m`, the
/// dashboard's own regex variables `.*`), so that promtool can parse it.
pub fn with_variables_filled(expr: &str) -> String {
    let mut filled = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        filled.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("a closed ${...}");
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        filled.push_str(if name.starts_with("__") { "5m" } else { ".*" });
        rest = tail;
    }
    filled.push_str(rest);
    filled
}
