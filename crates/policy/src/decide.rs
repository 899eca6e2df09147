//! The rules' two decisions in the gateway: a tls endpoint's over the connection, inside the
//! handshake, and an http endpoint's per request (or, without rules, whether a certificate was
//! presented where one is asked for). The handshake, the HTTP proxy and `moat verify` all call
//! these, so they cannot disagree.

use moat_trust::{CaBundle, ClientIdentity};

use crate::evaluate::{PolicyDecision, evaluate};
use crate::request::{Client, Request};
use crate::rule::Rule;

/// The configured CA `identity` chains to, and the identity, as the policy wants them.
fn client<'a>(identity: &'a ClientIdentity, cas: Option<&'a CaBundle>) -> Client<'a> {
    Client {
        identity,
        ca: cas.and_then(|cas| cas.issuer_of(identity)),
    }
}

/// A tls endpoint's rules over the connection (`facts` without an HTTP request), as the
/// handshake applies them; `cas` names the CA a certificate chains to for issuer selectors.
pub fn decide_connection(
    rules: &[Rule],
    cas: Option<&CaBundle>,
    facts: &Request<'_>,
    identity: &ClientIdentity,
) -> PolicyDecision {
    evaluate(rules, facts, Some(&client(identity, cas)))
}

/// Whether an http endpoint lets one request go upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It may; the rules' decision, when there are rules.
    Admitted(Option<PolicyDecision>),
    /// The endpoint asks for a certificate, has no rules, and the client presented none (403).
    CertificateRequired,
    /// A rule (or no rule) refused it (403 naming the rule).
    Refused(PolicyDecision),
}

/// Decides one request of an http endpoint: its rules when it has any (judging the canonical
/// path in `facts`), otherwise whether a certificate was presented where one is asked for.
pub fn admit_request(
    rules: &[Rule],
    asks_for_certificate: bool,
    cas: Option<&CaBundle>,
    facts: &Request<'_>,
    identity: Option<&ClientIdentity>,
) -> Admission {
    if rules.is_empty() {
        return if !asks_for_certificate || identity.is_some() {
            Admission::Admitted(None)
        } else {
            Admission::CertificateRequired
        };
    }
    let client = identity.map(|identity| client(identity, cas));
    let decision = evaluate(rules, facts, client.as_ref());
    if decision.is_allowed() {
        Admission::Admitted(Some(decision))
    } else {
        Admission::Refused(decision)
    }
}
