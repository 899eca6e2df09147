//! Access policies at the gateway: per request for http endpoints, during the handshake for tls
//! endpoints (so that a refusal is the `access_denied` alert).
//!
//! rustls can only send an alert for an error raised inside the handshake; once it completes,
//! all moat could do is close the connection. So the client verifier of a tls endpoint with
//! rules evaluates them right after the certificate is verified, with the SNI (read from the
//! ClientHello before the handshake) and the peer address, both handed over through a
//! task-local that the accept loop sets around the handshake.
//!
//! rustls does not call the verifier on a resumed handshake, so where the rules read facts a
//! resumed connection need not share with the one that made the session (its address, CEL),
//! the endpoint does not resume at all (`tls::resumes_sessions`).

use std::net::SocketAddr;
use std::sync::Arc;

use moat_policy::{PolicyDecision, Request, Rule};
use moat_trust::{ClientIdentity, ClientVerifier};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::explain;
use crate::telemetry::presented::{record_certificate, record_identity};

/// What the handshake of one connection knows before the client's certificate arrives.
#[derive(Debug)]
pub(crate) struct HandshakeFacts {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// The SNI the client sent, read from its ClientHello before the handshake.
    pub sni: Option<String>,
}

tokio::task_local! {
    /// Set by the accept loop around each handshake; read by [`HandshakeVerifier`], which rustls
    /// calls synchronously inside that handshake's poll.
    pub(crate) static HANDSHAKE: Arc<HandshakeFacts>;
}

/// The client verifier rustls calls for every endpoint that trusts CAs: moat-trust's verdict,
/// recorded so that a refused handshake's audit event can name the certificate, then, for a tls
/// endpoint with rules, those rules, refusing with `access_denied` (rustls's alert for
/// `ApplicationVerificationFailure`).
#[derive(Debug)]
pub(crate) struct HandshakeVerifier {
    trust: Arc<ClientVerifier>,
    /// The rules decided during the handshake; empty for http endpoints, whose rules decide per
    /// request.
    rules: Vec<Rule>,
    /// Whether a rule names a CA, so the CA a certificate chains to must be found.
    uses_issuer: bool,
}

impl HandshakeVerifier {
    /// Verifies with `trust`, then applies `rules` (none: the CAs' verdict alone).
    pub(crate) fn new(trust: Arc<ClientVerifier>, rules: Vec<Rule>) -> HandshakeVerifier {
        let uses_issuer = moat_policy::rules_use_issuer(&rules);
        HandshakeVerifier {
            trust,
            rules,
            uses_issuer,
        }
    }
    /// The rules' decision on an accepted chain; the identity read for it is recorded for the
    /// connection, so the certificate is read once per handshake.
    fn decide(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<PolicyDecision> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|der| der.clone().into_owned()));
        let identity = Arc::new(ClientIdentity::from_chain(&chain).ok()?);
        record_identity(Arc::clone(&identity));
        HANDSHAKE
            .try_with(|facts| {
                let sni = facts.sni.clone();
                let request = Request {
                    source_ip: facts.peer.ip(),
                    source_port: facts.peer.port(),
                    server: Some(facts.local),
                    sni: sni.as_deref(),
                    tls_version: None,
                    http: None,
                };
                let cas = self.uses_issuer.then(|| self.trust.cas());
                let decision = explain::decide_connection(&self.rules, cas, &request, &identity);
                if !decision.is_allowed() {
                    tracing::warn!(
                        reason = "policy_denied",
                        rule = decision.rule.as_deref().unwrap_or("-"),
                        subject = %identity.subject,
                        serial = %identity.serial_hex,
                        sni = sni.as_deref().unwrap_or(""),
                        detail = %decision.explanation,
                        "client certificate refused by the access policy"
                    );
                }
                decision
            })
            .ok()
    }
}

impl ClientCertVerifier for HandshakeVerifier {
    fn offer_client_auth(&self) -> bool {
        self.trust.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.trust.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.trust.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self
            .trust
            .verify_with_reason(end_entity, intermediates, now);
        record_certificate(
            end_entity,
            verdict.as_ref().err().map(|refused| refused.reason),
        );
        verdict.map_err(|refused| refused.error)?;
        if self.rules.is_empty() {
            return Ok(ClientCertVerified::assertion());
        }
        match self.decide(end_entity, intermediates) {
            Some(decision) if decision.is_allowed() => Ok(ClientCertVerified::assertion()),
            // No decision (no facts outside the accept loop, unreadable certificate): refuse.
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.supported_verify_schemes()
    }
}
