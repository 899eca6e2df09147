//! The one decision path: what the gateway decides for a client and a request on an endpoint, used by the handshake, per-request admission and `moat verify` alike.
//!
//! ```text
//! EndpointTrust::load(endpoint) ──> the ClientVerifier the handshake runs (CAs, CRLs, crl_expired)
//! certificate_required_at_handshake(endpoint) ──> whether no certificate ends the handshake
//! moat_policy::decide_connection ──> a tls endpoint's rules, inside the handshake
//! moat_policy::admit_request     ──> an http endpoint's rules (or "a certificate is required"), per request
//! explain(endpoint, trust, ask)  ──> all of the above in the gateway's order, for `moat verify`
//! ```
//!
//! Because the gateway calls the same functions, `moat verify` cannot drift from it: a stale CRL
//! under `crl_expired = "refuse"` refuses in both, with the same reason.

use std::net::SocketAddr;
use std::sync::Arc;

use moat_config::{ClientAuthMode, CrlExpiredPolicy, EndpointConfig, EndpointKind};
use moat_policy::{
    Admission, HttpRequest, Outcome, PolicyDecision, Request, admit_request, decide_connection,
};
use moat_trust::{
    CaBundle, CertificateRefused, ClientIdentity, ClientVerifier, RefusalReason, RevocationLists,
};
use rustls::AlertDescription;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::GatewayError;
use moat_proxy::http::canonical::{CanonicalTarget, PathRejection, canonical_target};
use moat_telemetry::HandshakeRefusal;

/// An endpoint's trust as the gateway enforces it: the verifier built from its CAs, CRLs and
/// settings, shared by every handshake of one load.
#[derive(Debug, Clone)]
pub struct EndpointTrust {
    /// The client-certificate verifier.
    pub verifier: Arc<ClientVerifier>,
    /// The loaded CRLs, to report stale ones.
    pub crls: RevocationLists,
}

impl EndpointTrust {
    /// Loads the endpoint's CAs and CRLs into its verifier; `None` when the endpoint trusts no
    /// CA (it asks for no certificate).
    pub fn load(endpoint: &EndpointConfig) -> Result<Option<EndpointTrust>, GatewayError> {
        if endpoint.mutual_tls_cas.is_empty() {
            return Ok(None);
        }
        let trust_error = |source| GatewayError::Trust {
            endpoint: endpoint.name.clone(),
            source: Box::new(source),
        };
        let cas = CaBundle::from_files(&endpoint.mutual_tls_cas).map_err(trust_error)?;
        let mut builder = ClientVerifier::builder(cas.clone());
        let mut crls = RevocationLists::default();
        if !endpoint.crls.is_empty() {
            crls = RevocationLists::from_files(&endpoint.crls, &cas).map_err(trust_error)?;
            builder = builder.with_crls(crls.clone());
        }
        if !certificate_required_at_handshake(endpoint) {
            builder = builder.allow_unauthenticated();
        }
        if !endpoint.ca_hints {
            builder = builder.without_ca_hints();
        }
        if endpoint.crl_expired == CrlExpiredPolicy::Refuse {
            builder = builder.refuse_expired_crls();
        }
        let verifier = builder.build().map_err(trust_error)?;
        Ok(Some(EndpointTrust { verifier, crls }))
    }
}

/// Whether a client without a certificate is refused at the handshake (alert
/// `certificate_required`) rather than per request. Never for an endpoint that trusts no CA; for
/// `client_auth = "request"`, and for http rules that bypass or cover only some paths, the
/// requests decide (a readable 403 instead of an alert).
pub fn certificate_required_at_handshake(endpoint: &EndpointConfig) -> bool {
    if endpoint.mutual_tls_cas.is_empty() {
        return false;
    }
    match endpoint.kind {
        EndpointKind::Tls => true,
        EndpointKind::Http => {
            endpoint.client_auth == ClientAuthMode::RequireAndVerify
                && (endpoint.rules.is_empty()
                    || moat_policy::certificate_required_at_handshake(&endpoint.rules))
        }
    }
}

/// What `moat verify` asks: a certificate chain (leaf first), and a request.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The client's chain, leaf first; `None` for a client without a certificate.
    pub chain: Option<&'a [CertificateDer<'static>]>,
    /// The client's address.
    pub source: SocketAddr,
    /// The SNI, which is also the host.
    pub host: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request-target's path and query as the client would send it.
    pub target: &'a str,
    /// When the certificate is checked.
    pub now: UnixTime,
}

/// How the gateway would answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request reaches the upstream.
    Pass,
    /// The handshake is aborted with `alert`.
    Handshake {
        /// The reason audit events and metrics give.
        reason: HandshakeRefusal,
        /// The TLS alert the client receives.
        alert: AlertDescription,
    },
    /// The request is answered by moat with `status`.
    Request {
        /// The HTTP status.
        status: u16,
        /// The JSON `code` of moat's page.
        code: &'static str,
    },
}

/// Every step of one decision, in the gateway's order, for a person to read.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The verifier's verdict on the presented certificate; `None` when none was presented.
    pub certificate: Option<Result<(), CertificateRefused>>,
    /// The canonical path the rules judge (http endpoints that got that far).
    pub path: Option<Result<CanonicalTarget, PathRejection>>,
    /// The access policy's decision, when rules decided.
    pub decision: Option<PolicyDecision>,
    /// The outcome.
    pub verdict: Verdict,
}

/// Runs the gateway's decisions on `ask` for `endpoint`, whose trust `trust` is
/// ([`EndpointTrust::load`]): the certificate checks, whether one is required at the handshake,
/// a tls endpoint's rules, then an http endpoint's canonical path and request admission.
pub fn explain(
    endpoint: &EndpointConfig,
    trust: Option<&EndpointTrust>,
    ask: &Ask<'_>,
) -> Explanation {
    let mut explanation = Explanation {
        certificate: None,
        path: None,
        decision: None,
        verdict: Verdict::Pass,
    };
    // An endpoint that trusts no CA asks for no certificate, so none is presented.
    let presented = trust.zip(ask.chain.and_then(|chain| chain.split_first()));
    let mut identity = None;
    if let Some((trust, (leaf, intermediates))) = presented {
        let checked = trust
            .verifier
            .verify_with_reason(leaf, intermediates, ask.now)
            .map(|_| ());
        if let Err(refused) = &checked {
            explanation.verdict = Verdict::Handshake {
                reason: HandshakeRefusal::Certificate(refused.reason),
                alert: refused.reason.alert(),
            };
            explanation.certificate = Some(checked);
            return explanation;
        }
        explanation.certificate = Some(checked);
        identity = ask
            .chain
            .and_then(|chain| ClientIdentity::from_chain(chain).ok());
    }
    if identity.is_none() && certificate_required_at_handshake(endpoint) {
        explanation.verdict = Verdict::Handshake {
            reason: HandshakeRefusal::Certificate(RefusalReason::NoCertificate),
            alert: RefusalReason::NoCertificate.alert(),
        };
        return explanation;
    }
    let cas = trust.map(|trust| trust.verifier.cas());
    let mut facts = Request {
        source_ip: ask.source.ip(),
        source_port: ask.source.port(),
        server: None,
        sni: Some(ask.host),
        tls_version: None,
        http: None,
    };
    if endpoint.kind == EndpointKind::Tls {
        if let Some(identity) = &identity
            && !endpoint.rules.is_empty()
        {
            let decision = decide_connection(&endpoint.rules, cas, &facts, identity);
            if !decision.is_allowed() {
                explanation.verdict = Verdict::Handshake {
                    reason: HandshakeRefusal::PolicyDenied,
                    alert: AlertDescription::AccessDenied,
                };
            }
            explanation.decision = Some(decision);
        }
        return explanation;
    }

    let target = canonical_target(ask.target);
    explanation.path = Some(target.clone());
    let target = match target {
        Ok(target) => target,
        Err(_) => {
            explanation.verdict = Verdict::Request {
                status: 400,
                code: "invalid_path",
            };
            return explanation;
        }
    };
    facts.tls_version = Some("TLSv1.3");
    facts.http = Some(HttpRequest {
        method: ask.method,
        host: Some(ask.host),
        path: target.path(),
        query: target.query(),
        headers: None,
    });
    let asks_for_certificate = !endpoint.mutual_tls_cas.is_empty();
    match admit_request(
        &endpoint.rules,
        asks_for_certificate,
        cas,
        &facts,
        identity.as_ref(),
    ) {
        Admission::Admitted(decision) => explanation.decision = decision,
        Admission::CertificateRequired => {
            explanation.verdict = Verdict::Request {
                status: 403,
                code: "client_certificate_required",
            };
        }
        Admission::Refused(decision) => {
            explanation.verdict = Verdict::Request {
                status: 403,
                code: refusal_code(&decision),
            };
            explanation.decision = Some(decision);
        }
    }
    explanation
}

/// The JSON `code` of a 403 an access rule caused.
pub fn refusal_code(decision: &PolicyDecision) -> &'static str {
    match decision.outcome {
        Outcome::Refuse(moat_policy::Refusal::NoCertificate) => "client_certificate_required",
        _ => "policy_denied",
    }
}
