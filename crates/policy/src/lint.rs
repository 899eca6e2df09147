//! Load-time warnings: rules that can never decide anything.

use std::fmt;

use crate::rule::Rule;

/// A rule that is valid but cannot work as written; `moat config check` prints these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule's name.
    pub rule: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {:?}: {}", self.rule, self.message)
    }
}

/// Finds host and path globs that cannot match, and rules that an earlier rule covers
/// entirely (first match decides, so they never do).
pub fn lint(rules: &[Rule]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let parts = rule.parts();
        for host in &parts.hosts {
            if let Some(why) = host.never_matches() {
                warnings.push(Warning {
                    rule: rule.name().to_owned(),
                    message: format!("host {:?} can never match: {why}", host.as_str()),
                });
            }
        }
        for path in &parts.paths {
            if let Some(why) = path.never_matches() {
                warnings.push(Warning {
                    rule: rule.name().to_owned(),
                    message: format!("path {:?} can never match: {why}", path.as_str()),
                });
            }
        }
        if let Some(earlier) = rules[..index]
            .iter()
            .find(|earlier| covers_all(earlier, rule))
        {
            warnings.push(Warning {
                rule: rule.name().to_owned(),
                message: format!(
                    "unreachable: rule {:?} comes first and covers every host and path this one \
                     does; move this rule above it or narrow that one",
                    earlier.name()
                ),
            });
        }
    }
    warnings
}

/// True when every request `later` covers is covered by `earlier`: each of later's host and
/// path patterns, read as text, is matched by one of earlier's (a `*` in earlier's pattern
/// matches a `*` in later's).
fn covers_all(earlier: &Rule, later: &Rule) -> bool {
    let (e, l) = (earlier.parts(), later.parts());
    let hosts = e.hosts.is_empty()
        || (!l.hosts.is_empty()
            && l.hosts
                .iter()
                .all(|host| e.hosts.iter().any(|p| p.matches(host.as_str()))));
    let paths = e.paths.is_empty()
        || (!l.paths.is_empty()
            && l.paths
                .iter()
                .all(|path| e.paths.iter().any(|p| p.matches(path.as_str()))));
    hosts && paths
}
