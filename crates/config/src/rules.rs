//! `[[endpoints.rules]]` and `--policy FILE`: access rules as written, checked into
//! [`moat_policy::Rule`]s with errors that name the rule.

use std::path::Path;

use moat_policy::{
    Action, Expression, HostPattern, PathPattern, Rule, RuleParts, Selector, SelectorValue,
};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, FieldError};
use crate::model::EndpointKind;

/// One rule as written: `[[endpoints.rules]]` in `moat.toml`, `[[rules]]` in a policy file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Names the rule in 403 pages, logs and errors (required).
    pub name: Option<String>,
    /// Hosts covered (exact or `*.example.com`); none means every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths covered (`/admin/*`); none means every path. Not on tls endpoints.
    #[serde(default)]
    pub paths: Vec<String>,
    /// `"allow"`, `"deny"` or `"bypass"`.
    pub action: Option<String>,
    /// Selectors of which any one must match, e.g. `[{ common_name = "ops-*" }]`.
    #[serde(default)]
    pub include: Vec<toml::Table>,
    /// Selectors that must all match.
    #[serde(default)]
    pub require: Vec<toml::Table>,
    /// Selectors none of which may match.
    #[serde(default)]
    pub exclude: Vec<toml::Table>,
    /// CEL expressions that must all be true.
    #[serde(default)]
    pub expressions: Vec<String>,
}

/// The top level of a `--policy` file: only `[[rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// `rules` as the text of a policy file (`[[rules]]` tables), which [`load_policy_str`] reads
/// back into the same rules: how an agent hands an endpoint's rules to the edge that enforces
/// them. `None` when the rules cannot be written as TOML (not expected of rules read from TOML).
pub fn policy_text(rules: &[RuleSpec]) -> Option<String> {
    #[derive(Serialize)]
    struct PolicyText<'a> {
        rules: &'a [RuleSpec],
    }
    toml::to_string(&PolicyText { rules }).ok()
}

/// Reads the `[[rules]]` of a `--policy` file (checked later with the endpoint).
pub fn read_policy_file(path: &Path) -> Result<Vec<RuleSpec>, ConfigError> {
    let text = read_text(path)?;
    read_policy_str(&text, &path.display().to_string())
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        what: "policy file",
        source,
    })
}

/// [`read_policy_file`] over text already in memory; `origin` names it in errors.
fn read_policy_str(text: &str, origin: &str) -> Result<Vec<RuleSpec>, ConfigError> {
    let file: PolicyFile = toml::from_str(text).map_err(|error| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: error.to_string().trim_end().replace('\n', " "),
    })?;
    if file.rules.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems: vec![FieldError {
                path: "rules".to_owned(),
                message: "no rules; add [[rules]] tables with name, action and selectors"
                    .to_owned(),
            }],
        });
    }
    Ok(file.rules)
}

/// Reads and checks the `[[rules]]` of a policy file for an endpoint of `kind` that trusts
/// client CAs, as `moat verify --policy` needs them without an endpoint to attach them to.
pub fn load_policy_file(path: &Path, kind: EndpointKind) -> Result<Vec<Rule>, ConfigError> {
    load_policy_str(&read_text(path)?, &path.display().to_string(), kind)
}

/// [`load_policy_file`] over text already in memory; `origin` names it in errors. The fuzz
/// target `policy` drives this.
pub fn load_policy_str(
    text: &str,
    origin: &str,
    kind: EndpointKind,
) -> Result<Vec<Rule>, ConfigError> {
    let specs = read_policy_str(text, origin)?;
    let context = RuleContext {
        prefix: "rules".to_owned(),
        kind: Some(kind),
        has_cas: true,
    };
    let mut problems = Vec::new();
    match validate_rules(specs, &context, &mut problems) {
        Some(rules) => Ok(rules),
        None => Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        }),
    }
}

/// What the endpoint offers the rules, for the checks that depend on it.
pub(crate) struct RuleContext {
    /// `endpoints[0].rules` in a file, `--policy FILE: rules` for flags.
    pub prefix: String,
    pub kind: Option<EndpointKind>,
    pub has_cas: bool,
}

/// Checks every rule; returns the rules when none had a problem (problems are appended).
pub(crate) fn validate_rules(
    specs: Vec<RuleSpec>,
    context: &RuleContext,
    problems: &mut Vec<FieldError>,
) -> Option<Vec<Rule>> {
    let before = problems.len();
    if !specs.is_empty() && !context.has_cas {
        problems.push(FieldError {
            path: context.prefix.clone(),
            message: "rules decide which client certificates pass, but the endpoint trusts no CA; \
                      give the CA file (mutual_tls_cas, --mutual-tls-cas)"
                .to_owned(),
        });
    }
    let mut rules = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let before_rule = problems.len();
        let label = match &spec.name {
            Some(name) => format!("{}[{index}] ({name:?})", context.prefix),
            None => format!("{}[{index}]", context.prefix),
        };
        let mut push = |key: &str, message: String| {
            let path = if key.is_empty() {
                label.clone()
            } else {
                format!("{label}.{key}")
            };
            problems.push(FieldError { path, message });
        };
        let name = match spec.name {
            Some(name) if !name.trim().is_empty() => {
                if names.contains(&name) {
                    push(
                        "name",
                        format!("{name:?} names an earlier rule too; give each rule its own name"),
                    );
                }
                names.push(name.clone());
                Some(name)
            }
            Some(_) => {
                push(
                    "name",
                    "is empty; name the rule, e.g. name = \"admins\"".to_owned(),
                );
                None
            }
            None => {
                push(
                    "name",
                    "missing; name the rule, e.g. name = \"admins\" (403 pages show it)".to_owned(),
                );
                None
            }
        };
        let action = match spec.action.as_deref() {
            Some(text) => match Action::parse(text) {
                Some(action) => Some(action),
                None => {
                    push(
                        "action",
                        format!("{text:?} is not an action; use \"allow\", \"deny\" or \"bypass\""),
                    );
                    None
                }
            },
            None => {
                push(
                    "action",
                    "missing; add action = \"allow\", \"deny\" or \"bypass\"".to_owned(),
                );
                None
            }
        };
        if context.kind == Some(EndpointKind::Tls) {
            if !spec.paths.is_empty() {
                push("paths", "a tls endpoint forwards a byte stream and sees no paths; remove paths (rules match the SNI host)".to_owned());
            }
            if action == Some(Action::Bypass) {
                push("action", "\"bypass\" applies to http endpoints only: a tls endpoint demands a certificate at the handshake and refuses with access_denied; remove the rule or use an http endpoint".to_owned());
            }
        }
        let hosts = spec.hosts.iter().map(|h| HostPattern::new(h)).collect();
        let paths = spec.paths.iter().map(|p| PathPattern::new(p)).collect();
        let mut selectors = |list: Vec<toml::Table>, key: &str| -> Vec<Selector> {
            let mut out = Vec::new();
            for (position, table) in list.into_iter().enumerate() {
                let field = format!("{key}[{position}]");
                if table.len() != 1 {
                    push(
                        &field,
                        format!(
                            "holds {} keys; write one selector per table, e.g. {{ common_name = \"ops-*\" }}",
                            table.len()
                        ),
                    );
                    continue;
                }
                for (selector_name, value) in table {
                    let value = match value {
                        toml::Value::String(text) => SelectorValue::Text(text),
                        toml::Value::Boolean(flag) => SelectorValue::Bool(flag),
                        other => SelectorValue::Text(other.to_string()),
                    };
                    match Selector::parse(&selector_name, value) {
                        Ok(selector) => out.push(selector),
                        Err(error) => push(&field, error.to_string()),
                    }
                }
            }
            out
        };
        let include = selectors(spec.include, "include");
        let require = selectors(spec.require, "require");
        let exclude = selectors(spec.exclude, "exclude");
        let mut expressions = Vec::new();
        for (position, text) in spec.expressions.iter().enumerate() {
            match Expression::compile(text) {
                Ok(expression) => expressions.push(expression),
                Err(error) => push(
                    &format!("expressions[{position}]"),
                    format!("{text:?} {error}"),
                ),
            }
        }
        if problems.len() != before_rule {
            continue;
        }
        let (Some(name), Some(action)) = (name, action) else {
            continue;
        };
        match Rule::new(RuleParts {
            name,
            hosts,
            paths,
            action,
            include,
            require,
            exclude,
            expressions,
        }) {
            Ok(rule) => rules.push(rule),
            Err(error) => problems.push(FieldError {
                path: label,
                message: error.to_string(),
            }),
        }
    }
    (problems.len() == before).then_some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_written_out_as_a_policy_file_read_back_the_same() {
        let text = r#"
[[rules]]
name = "no-admin"
hosts = ["app.example.com"]
paths = ["/admin/*"]
action = "deny"

[[rules]]
name = "ops"
action = "allow"
include = [{ common_name = "ops-*" }, { san_dns = "*.ops.example.com" }]
exclude = [{ common_name = "ops-intern" }]
expressions = ["conn.tls.client.subject.common_name != 'x'"]
"#;
        let specs = read_policy_str(text, "test").unwrap();
        let written = policy_text(&specs).unwrap();
        assert_eq!(read_policy_str(&written, "written").unwrap(), specs);
        let rules = load_policy_str(&written, "written", EndpointKind::Http).unwrap();
        let names: Vec<&str> = rules.iter().map(|rule| rule.name()).collect();
        assert_eq!(names, ["no-admin", "ops"]);
    }
}
