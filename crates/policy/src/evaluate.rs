//! The decision: the first rule covering the request's host and path decides, and says why.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use moat_trust::{CaCertificate, ClientIdentity};

use crate::expression::Variables;
use crate::rule::{Action, Rule};
use crate::selector::Selector;

/// What is known about a request when the policy is asked; no I/O happens after this is built.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's port.
    pub source_port: u16,
    /// The address the client connected to, when known.
    pub server: Option<SocketAddr>,
    /// The server name the client asked for in the TLS handshake.
    pub sni: Option<&'a str>,
    /// The negotiated TLS version, `TLSv1.3` or `TLSv1.2`; unknown while the handshake runs.
    pub tls_version: Option<&'a str>,
    /// The HTTP request, absent on `tls` endpoints (which decide per connection).
    pub http: Option<HttpRequest<'a>>,
}

/// The parts of an HTTP request that rules look at.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The host the client addressed (`Host` / `:authority`), possibly with a port.
    pub host: Option<&'a str>,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers, for `req.headers` in expressions.
    pub headers: Option<&'a http::HeaderMap>,
}

impl Request<'_> {
    /// The host rules match on: the HTTP host, else the SNI.
    pub fn host(&self) -> Option<&str> {
        self.http.as_ref().and_then(|http| http.host).or(self.sni)
    }

    fn path(&self) -> Option<&str> {
        self.http.as_ref().map(|http| http.path)
    }
}

/// A client that presented a certificate the endpoint's CAs verified.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// What the certificate says.
    pub identity: &'a ClientIdentity,
    /// The configured CA the certificate chains to, for `issuer = "file.pem"`.
    pub ca: Option<&'a CaCertificate>,
}

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
