//! The client-certificate verdict inside the handshake: the CAs' verdict, then, for a tls
//! endpoint, its access rules (so that a refusal is the `access_denied` alert).
//!
//! rustls can only send an alert for an error raised inside the handshake; once it completes,
//! all moat could do is close the connection. So a tls endpoint's rules are evaluated right
//! after the certificate is verified, with the SNI (read from the ClientHello before the
//! handshake) and the peer address.
//!
//! Those facts go in, and the verdict comes out, through the verifier itself: each handshake of
//! an endpoint that asks for certificates gets its own [`ConnectionVerifier`] (and its own
//! `ServerConfig`, see `tls::ServerTls::for_handshake`) holding that connection's facts and the
//! slot its [`CertificateVerdict`] is written to. rustls's error cannot carry the verdict out:
//! the alert is derived from the error's variant, and a custom `CertificateError::Other` would
//! turn every refusal into `certificate_unknown`.
//!
//! rustls does not call the verifier on a resumed handshake, so where the rules read facts a
//! resumed connection need not share with the one that made the session (its address, CEL),
//! the endpoint does not resume at all (`tls::resumes_sessions`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use moat_policy::{PolicyDecision, Request, Rule};
use moat_trust::{ClientIdentity, ClientVerifier, RefusalReason};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

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

/// What the verifier decided about the certificate of one handshake, read once by the
/// connection after the handshake (the identity is parsed here, once, for rules, headers and
/// audit alike).
#[derive(Debug)]
pub(crate) enum CertificateVerdict {
    /// The CAs accepted the chain and a tls endpoint's rules, if any, allowed it.
    Accepted(Arc<ClientIdentity>),
    /// The CAs (or the certificate's own encoding) refused it.
    Untrusted {
        /// The leaf the client sent, for the audit event.
        certificate: CertificateDer<'static>,
        /// Why: tells `bad_signature` from `malformed`, which share an alert.
        reason: RefusalReason,
    },
    /// The CAs accepted it and a tls endpoint's rules refused it (`access_denied`).
    Denied(Arc<ClientIdentity>),
}

/// Where a handshake's verifier leaves its verdict; empty when the client sent no certificate
/// (or the handshake resumed a session).
pub(crate) type VerdictSlot = Arc<Mutex<Option<CertificateVerdict>>>;

/// Takes the verdict out of `slot`.
pub(crate) fn take_verdict(slot: &VerdictSlot) -> Option<CertificateVerdict> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// An endpoint's judgement of client certificates, shared by all its handshakes: its trusted
/// CAs, and the rules a tls endpoint decides during the handshake (none for http endpoints,
/// whose rules decide per request).
#[derive(Debug)]
pub(crate) struct EndpointAccess {
    trust: Arc<ClientVerifier>,
    rules: Vec<Rule>,
    /// Whether a rule names a CA, so the CA a certificate chains to must be found.
    uses_issuer: bool,
}

impl EndpointAccess {
    /// Verifies with `trust`, then applies `rules` (none: the CAs' verdict alone).
    pub(crate) fn new(trust: Arc<ClientVerifier>, rules: Vec<Rule>) -> EndpointAccess {
        let uses_issuer = moat_policy::rules_use_issuer(&rules);
        EndpointAccess {
            trust,
            rules,
            uses_issuer,
        }
    }

    /// The verdict on one chain presented in the handshake described by `facts`, and the error
    /// that makes rustls send the verdict's alert when it is a refusal.
    fn judge(
        &self,
        facts: &HandshakeFacts,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> (CertificateVerdict, Option<rustls::Error>) {
        let untrusted = |reason, error| {
            let verdict = CertificateVerdict::Untrusted {
                certificate: end_entity.clone().into_owned(),
                reason,
            };
            (verdict, Some(error))
        };
        if let Err(refused) = self
            .trust
            .verify_with_reason(end_entity, intermediates, now)
        {
            return untrusted(refused.reason, refused.error);
        }
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|der| der.clone().into_owned()));
        let identity = match ClientIdentity::from_chain(&chain) {
            Ok(identity) => Arc::new(identity),
            Err(error) => {
                // The CAs accepted it, so this is not expected; refuse rather than let in a
                // connection whose identity cannot be told to the rules or the upstream.
                tracing::warn!(reason = "malformed", %error, "client certificate refused: the verified certificate cannot be read");
                let error = rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
                return untrusted(RefusalReason::Malformed, error);
            }
        };
        if self.rules.is_empty() || self.decide(facts, &identity).is_allowed() {
            return (CertificateVerdict::Accepted(identity), None);
        }
        // rustls sends `access_denied` for this error.
        let error =
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        (CertificateVerdict::Denied(identity), Some(error))
    }

    /// A tls endpoint's rules on an accepted certificate.
    fn decide(&self, facts: &HandshakeFacts, identity: &ClientIdentity) -> PolicyDecision {
        let request = Request {
            source_ip: facts.peer.ip(),
            source_port: facts.peer.port(),
            server: Some(facts.local),
            sni: facts.sni.as_deref(),
            tls_version: None,
            http: None,
        };
        let cas = self.uses_issuer.then(|| self.trust.cas());
        let decision = moat_policy::decide_connection(&self.rules, cas, &request, identity);
        if !decision.is_allowed() {
            tracing::warn!(
                reason = "policy_denied",
                rule = decision.rule.as_deref().unwrap_or("-"),
                subject = %identity.subject,
                serial = %identity.serial_hex,
                sni = facts.sni.as_deref().unwrap_or(""),
                detail = %decision.explanation,
                "client certificate refused by the access policy"
            );
        }
        decision
    }
}

/// The client verifier of one handshake: its endpoint's [`EndpointAccess`], the facts of this
/// connection, and the slot its verdict goes to.
#[derive(Debug)]
pub(crate) struct ConnectionVerifier {
    access: Arc<EndpointAccess>,
    facts: HandshakeFacts,
    verdict: VerdictSlot,
}

impl ConnectionVerifier {
    /// A verifier for the handshake described by `facts`, writing its verdict to `verdict`.
    pub(crate) fn new(
        access: Arc<EndpointAccess>,
        facts: HandshakeFacts,
        verdict: VerdictSlot,
    ) -> ConnectionVerifier {
        ConnectionVerifier {
            access,
            facts,
            verdict,
        }
    }
}

impl ClientCertVerifier for ConnectionVerifier {
    fn offer_client_auth(&self) -> bool {
        self.access.trust.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.access.trust.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.access.trust.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (verdict, refusal) = self
            .access
            .judge(&self.facts, end_entity, intermediates, now);
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        // The error only chooses the alert; the verdict carries the reason.
        match refusal {
            None => Ok(ClientCertVerified::assertion()),
            Some(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.access.trust.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.access.trust.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.access.trust.supported_verify_schemes()
    }
}
