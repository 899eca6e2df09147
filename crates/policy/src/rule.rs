//! A rule: which requests it covers (hosts × paths) and what it decides for them.

use crate::expression::Expression;
use crate::pattern::{HostPattern, PathPattern};
use crate::selector::Selector;

/// What a rule does with the requests it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the client in when its selectors and expressions say so; refuse it otherwise.
    Allow,
    /// Refuse every request it covers.
    Deny,
    /// Let every request it covers in, with or without a certificate (health checks, assets).
    Bypass,
}

impl Action {
    /// `"allow"`, `"deny"` or `"bypass"`, as written in the configuration.
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "bypass" => Some(Action::Bypass),
            _ => None,
        }
    }

    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Bypass => "bypass",
        }
    }
}

/// Why a rule's parts do not make a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// An allow rule with nothing to test would let every client in or none.
    #[error(
        "an allow rule needs something to test: add include = [{{ valid_certificate = true }}] to \
         let any valid certificate in, or a selector such as {{ common_name = \"ops-*\" }}"
    )]
    AllowWithoutSelectors,
    /// Selectors on a rule whose action ignores them.
    #[error(
        "a {action} rule decides without looking at the client, so include/require/exclude/\
         expressions would be ignored; remove them, or use action = \"allow\" with exclude"
    )]
    SelectorsIgnored {
        /// `deny` or `bypass`.
        action: &'static str,
    },
}

/// The parts of a rule as read from the configuration, before [`Rule::new`] checks them.
#[derive(Debug, Clone)]
pub struct RuleParts {
    /// Names the rule in 403 pages, logs and `moat verify`.
    pub name: String,
    /// Hosts covered; empty means every host.
    pub hosts: Vec<HostPattern>,
    /// Paths covered; empty means every path.
    pub paths: Vec<PathPattern>,
    /// What the rule decides.
    pub action: Action,
    /// Any one of these must match (when there are any).
    pub include: Vec<Selector>,
    /// All of these must match.
    pub require: Vec<Selector>,
    /// None of these may match.
    pub exclude: Vec<Selector>,
    /// CEL expressions that must all be true.
    pub expressions: Vec<Expression>,
}

/// One access rule, checked; rules are tried in order and the first whose hosts and paths
/// cover the request decides.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) parts: RuleParts,
}

impl Rule {
    /// A rule from its parts, refusing combinations whose meaning would be a surprise.
    pub fn new(parts: RuleParts) -> Result<Rule, RuleError> {
        let tests_nothing = parts.include.is_empty()
            && parts.require.is_empty()
            && parts.exclude.is_empty()
            && parts.expressions.is_empty();
        match parts.action {
            Action::Allow
                if parts.include.is_empty()
                    && parts.require.is_empty()
                    && parts.expressions.is_empty() =>
            {
                Err(RuleError::AllowWithoutSelectors)
            }
            Action::Deny | Action::Bypass if !tests_nothing => Err(RuleError::SelectorsIgnored {
                action: parts.action.as_str(),
            }),
            _ => Ok(Rule { parts }),
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// What the rule decides.
    pub fn action(&self) -> Action {
        self.parts.action
    }

    /// The parts the rule was made of.
    pub fn parts(&self) -> &RuleParts {
        &self.parts
    }

    /// True when the rule covers this host and path (`None`: unknown, covered only by a rule
    /// without hosts / paths).
    pub fn covers(&self, host: Option<&str>, path: Option<&str>) -> bool {
        let host_ok = self.parts.hosts.is_empty()
            || host.is_some_and(|host| self.parts.hosts.iter().any(|p| p.matches(host)));
        let path_ok = self.parts.paths.is_empty()
            || path.is_some_and(|path| self.parts.paths.iter().any(|p| p.matches(path)));
        host_ok && path_ok
    }
}

/// Whether any rule has an `issuer` selector, the only one that needs to know which configured
/// CA a certificate chains to ([`crate::Client::ca`]); finding that out checks a signature, so
/// callers skip it otherwise.
pub fn rules_use_issuer(rules: &[Rule]) -> bool {
    rules.iter().any(|rule| {
        let p = &rule.parts;
        p.include
            .iter()
            .chain(&p.require)
            .chain(&p.exclude)
            .any(|selector| matches!(selector, Selector::Issuer(_)))
    })
}

/// Whether any rule reads a fact of the connection that a resumed TLS session need not share
/// with the connection it came from: a `source_ip` selector, or a CEL expression (which may
/// read `conn.client_port` and the like; counted without looking inside). A resumed session
/// brings back its certificate, and its SNI must be the same (RFC 6066 3: a server must not
/// resume a session under another name, and rustls keeps to that), so rules reading only those
/// — selectors on the certificate, `hosts` — give the resumed connection the same verdict.
pub fn rules_use_connection_facts(rules: &[Rule]) -> bool {
    rules.iter().any(|rule| {
        let p = &rule.parts;
        !p.expressions.is_empty()
            || p.include
                .iter()
                .chain(&p.require)
                .chain(&p.exclude)
                .any(|selector| matches!(selector, Selector::SourceIp(_)))
    })
}

/// Whether the handshake must demand a client certificate: not when a rule bypasses or covers
/// only some paths, since then some requests pass (or get a readable 403) without one.
pub fn certificate_required_at_handshake(rules: &[Rule]) -> bool {
    !rules
        .iter()
        .any(|rule| rule.action() == Action::Bypass || !rule.parts.paths.is_empty())
}

/// Two rules are equal when they are written the same way (compiled globs and CEL programs
/// cannot be compared, their sources can), so a Config can be compared with a reloaded one.
impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.canonical_text() == other.canonical_text()
    }
}

impl Rule {
    fn canonical_text(&self) -> String {
        let p = &self.parts;
        let strings = |items: Vec<String>| items.join("\u{1f}");
        format!(
            "{}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{}",
            p.name,
            p.action.as_str(),
            strings(p.hosts.iter().map(|h| h.as_str().to_owned()).collect()),
            strings(p.paths.iter().map(|h| h.as_str().to_owned()).collect()),
            strings(p.include.iter().map(ToString::to_string).collect()),
            strings(p.require.iter().map(ToString::to_string).collect()),
            strings(p.exclude.iter().map(ToString::to_string).collect()),
            strings(
                p.expressions
                    .iter()
                    .map(|e| e.source().to_owned())
                    .collect()
            ),
        )
    }
}
