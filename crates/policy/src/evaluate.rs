//! The decision: the first rule covering the request's host and path decides, and says why.

use std::fmt;

use crate::expression::Variables;
use crate::request::{Client, Request};
use crate::rule::{Action, Rule};
use crate::selector::Selector;

/// Why a request was refused, for 403 pages, alerts and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The deciding rule needs a certificate and the client presented none.
    NoCertificate,
    /// The deciding allow rule's selectors or expressions did not let this certificate in.
    NotAllowed,
    /// The deciding rule is a deny rule.
    DeniedByRule,
    /// No rule covers the request's host and path.
    NoMatchingRule,
}

impl Refusal {
    /// A stable snake_case name, e.g. for a JSON 403 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::NotAllowed => "not_allowed",
            Refusal::DeniedByRule => "denied_by_rule",
            Refusal::NoMatchingRule => "no_matching_rule",
        }
    }
}

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An allow rule let the client in.
    Allow,
    /// A bypass rule let the request in without looking at the client.
    Bypass,
    /// Refused, for this reason.
    Refuse(Refusal),
}

/// The decision with the rule that made it and a sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Allowed, bypassed or refused.
    pub outcome: Outcome,
    /// The deciding rule's name; `None` when no rule covered the request.
    pub rule: Option<String>,
    /// Why, for a person: which selector matched or which one failed.
    pub explanation: String,
}

impl PolicyDecision {
    /// True when the request may go upstream.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow | Outcome::Bypass)
    }
}

impl fmt::Display for PolicyDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

/// Decides `request` from `client` (`None`: no certificate) by the first rule of `rules` whose
/// hosts and paths cover it; when none does, the request is refused.
pub fn evaluate(
    rules: &[Rule],
    request: &Request<'_>,
    client: Option<&Client<'_>>,
) -> PolicyDecision {
    let host = request.host();
    let path = request.path();
    let Some(rule) = rules.iter().find(|rule| rule.covers(host, path)) else {
        return PolicyDecision {
            outcome: Outcome::Refuse(Refusal::NoMatchingRule),
            rule: None,
            explanation: format!(
                "no rule covers host {} and path {}, so the request is refused",
                host.unwrap_or("(none)"),
                path.unwrap_or("(none)")
            ),
        };
    };
    let name = rule.name().to_owned();
    let decided = |outcome, explanation: String| PolicyDecision {
        outcome,
        rule: Some(name.clone()),
        explanation,
    };
    match rule.action() {
        Action::Bypass => decided(
            Outcome::Bypass,
            format!("rule {name:?} bypasses: no certificate is needed"),
        ),
        Action::Deny => decided(
            Outcome::Refuse(Refusal::DeniedByRule),
            format!("rule {name:?} denies every request it covers"),
        ),
        Action::Allow => match check_allow(rule, request, client) {
            Ok(why) => decided(Outcome::Allow, format!("rule {name:?} allows: {why}")),
            Err(why) => {
                let refusal = if client.is_none() {
                    Refusal::NoCertificate
                } else {
                    Refusal::NotAllowed
                };
                let explanation = match refusal {
                    Refusal::NoCertificate => {
                        format!(
                            "rule {name:?} requires a client certificate and none was presented ({why})"
                        )
                    }
                    _ => format!("rule {name:?} refuses this certificate: {why}"),
                };
                decided(Outcome::Refuse(refusal), explanation)
            }
        },
    }
}

/// `Ok(why it matched)` or `Err(the first test that failed)`.
fn check_allow(
    rule: &Rule,
    request: &Request<'_>,
    client: Option<&Client<'_>>,
) -> Result<String, String> {
    let parts = rule.parts();
    let mut reasons = Vec::new();
    if !parts.include.is_empty() {
        match parts
            .include
            .iter()
            .find(|selector| selector.matches(request, client))
        {
            Some(selector) => reasons.push(format!("include {selector} matched")),
            None => {
                return Err(format!(
                    "no include selector matched ({})",
                    list(&parts.include)
                ));
            }
        }
    }
    if let Some(selector) = parts
        .require
        .iter()
        .find(|selector| !selector.matches(request, client))
    {
        return Err(format!("require {selector} did not match"));
    }
    if !parts.require.is_empty() {
        reasons.push(format!("require {} matched", list(&parts.require)));
    }
    if let Some(selector) = parts
        .exclude
        .iter()
        .find(|selector| selector.matches(request, client))
    {
        return Err(format!("exclude {selector} matched"));
    }
    if !parts.expressions.is_empty() {
        let variables = Variables::new(request, client);
        for expression in &parts.expressions {
            match expression.holds(&variables) {
                Ok(true) => {}
                Ok(false) => return Err(format!("expression `{}` is false", expression.source())),
                Err(error) => {
                    return Err(format!(
                        "expression `{}` could not be evaluated: {error}",
                        expression.source()
                    ));
                }
            }
        }
        reasons.push(format!("{} expression(s) true", parts.expressions.len()));
    }
    Ok(reasons.join("; "))
}

fn list(selectors: &[Selector]) -> String {
    selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
