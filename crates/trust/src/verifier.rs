//! The rustls client-certificate verifier: webpki for X.509 v3 chains, a direct check for v1 leafs.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, PeerMisbehaved,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::X509Version;

use crate::crl::CrlFinding;
use crate::verified::{ValidWindow, VerifiedChains};
use crate::x509::{SignatureFailure, rfc4514, serial_hex, split_spki, verify_signed};
use crate::{CaBundle, RefusalReason, RevocationLists, TrustError, provider};

/// Verifies client certificates against the configured CAs and CRLs during the TLS handshake,
/// and aborts refused handshakes with the alert that matches the cause.
///
/// X.509 v3 chains (with intermediates) go through rustls-webpki: path building to a configured
/// CA, validity, `clientAuth` when an EKU is present, and revocation of the leaf and every
/// intermediate by the loaded version 2 CRLs; the version 1 CRLs, which webpki cannot read, are
/// applied here to the same certificates afterwards. X.509 v1 leafs, which webpki rejects but
/// which the common `openssl x509 -req` recipe makes, are checked here directly against the CA
/// that signed them. Every refusal is logged once at `warn` with the reason, subject, issuer and
/// serial, including a client handshake signature that does not verify (e.g. an RSA-1024 key).
#[derive(Debug)]
pub struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    cas: CaBundle,
    crls: RevocationLists,
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
    refuse_expired_crls: bool,
    /// Chains accepted so far, accepted again without signature checks while valid.
    verified: VerifiedChains,
}

/// Builds a [`ClientVerifier`]; the defaults are the strict ones (a certificate is required),
/// and each method relaxes or extends one of them deliberately.
#[derive(Debug)]
pub struct ClientVerifierBuilder {
    cas: CaBundle,
    crls: RevocationLists,
    allow_unauthenticated: bool,
    ca_hints: bool,
    refuse_expired_crls: bool,
}

impl ClientVerifier {
    /// Starts a verifier that trusts the CAs of `cas`, requires a client certificate and checks
    /// no CRL until [`ClientVerifierBuilder::with_crls`] adds some.
    pub fn builder(cas: CaBundle) -> ClientVerifierBuilder {
        ClientVerifierBuilder {
            cas,
            crls: RevocationLists::default(),
            allow_unauthenticated: false,
            ca_hints: true,
            refuse_expired_crls: false,
        }
    }

    /// The trusted CAs, e.g. to list them at startup.
    pub fn cas(&self) -> &CaBundle {
        &self.cas
    }

    /// The loaded CRLs.
    pub fn crls(&self) -> &RevocationLists {
        &self.crls
    }

    /// Checks an X.509 v1 leaf: signed directly by a configured CA, within validity, not revoked.
    fn verify_v1(
        &self,
        cert: &X509Certificate<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Refusal> {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now_secs > cert.validity().not_after.timestamp() {
            return Err(Refusal::new(
                RefusalReason::Expired,
                &format!("the certificate expired at {}", cert.validity().not_after),
            ));
        }
        if now_secs < cert.validity().not_before.timestamp() {
            return Err(Refusal::new(
                RefusalReason::NotYetValid,
                &format!(
                    "the certificate is not valid before {}",
                    cert.validity().not_before
                ),
            ));
        }

        let issuer = cert.issuer().as_raw();
        let mut failure = None;
        let mut signer = None;
        for ca in self.cas.with_subject(issuer) {
            let Some(key) = split_spki(ca.spki_der()) else {
                continue;
            };
            match verify_signed(end_entity.as_ref(), &key, &self.algorithms) {
                Ok(()) => {
                    signer = Some(ca);
                    break;
                }
                Err(error) => failure = Some(error),
            }
        }
        let Some(ca) = signer else {
            return Err(match failure {
                None if intermediates.iter().any(|i| subject_is(i, issuer)) => Refusal::new(
                    RefusalReason::UnknownCa,
                    "an X.509 v1 client certificate is accepted only when a configured CA signed it directly; this one was signed by an intermediate, so issue a v3 certificate (openssl x509 -req with -extfile and extendedKeyUsage=clientAuth) or add the intermediate to the CA bundle",
                ),
                None => Refusal::new(
                    RefusalReason::UnknownCa,
                    "the issuer is not one of the configured CAs",
                ),
                Some(SignatureFailure::Malformed) => Refusal::new(
                    RefusalReason::Malformed,
                    "the certificate's signature fields are malformed",
                ),
                Some(SignatureFailure::UnsupportedAlgorithm) => Refusal::new(
                    RefusalReason::BadSignature,
                    "the certificate's signature algorithm is not supported for the CA's key",
                ),
                Some(SignatureFailure::Invalid) => Refusal::new(
                    RefusalReason::BadSignature,
                    "the certificate's signature does not verify with the CA's key",
                ),
            });
        };
        if self.refuse_expired_crls
            && let Some(stale) = self.crls.expired_for(ca, now)
        {
            return Err(Refusal::from_crl(CrlFinding::Stale(stale)));
        }
        if self.crls.is_revoked(ca, cert.raw_serial()) {
            return Err(Refusal::new(
                RefusalReason::Revoked,
                "a loaded CRL of the issuing CA lists the certificate",
            ));
        }
        Ok(())
    }

    /// Applies the version 1 CRLs, which rustls-webpki cannot read, to a chain it accepted.
    fn check_version_1_crls(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Refusal> {
        let chain: Vec<&CertificateDer<'_>> =
            std::iter::once(end_entity).chain(intermediates).collect();
        match self
            .crls
            .version_1_finding(&chain, now, self.refuse_expired_crls, &self.algorithms)
        {
            Some(finding) => Err(Refusal::from_crl(finding)),
            None => Ok(()),
        }
    }

    /// When an accepted chain stays acceptable: while every presented certificate is within its
    /// validity and, when stale CRLs are refused, until the first CRL's nextUpdate. `None` when
    /// an intermediate cannot be parsed (the chain is then verified afresh every time).
    fn valid_window(
        &self,
        end_entity: &X509Certificate<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<ValidWindow> {
        let mut window = ValidWindow {
            not_before: end_entity.validity().not_before.timestamp(),
            not_after: end_entity.validity().not_after.timestamp(),
        };
        for der in intermediates {
            let (_, intermediate) = X509Certificate::from_der(der.as_ref()).ok()?;
            let validity = intermediate.validity();
            window.not_before = window.not_before.max(validity.not_before.timestamp());
            window.not_after = window.not_after.min(validity.not_after.timestamp());
        }
        if self.refuse_expired_crls
            && let Some(next_update) = self.crls.earliest_next_update()
        {
            window.not_after = window.not_after.min(next_update);
        }
        Some(window)
    }

    /// Verifies a client certificate exactly as the handshake does and also says why a refused
    /// one was refused: the rustls error alone carries only the alert, which several reasons
    /// share (`bad_signature` and `malformed` both send `bad_certificate`), so audit events and
    /// metrics read the reason from here.
    pub fn verify_with_reason(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, CertificateRefused> {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let digest = VerifiedChains::digest(end_entity, intermediates);
        if self.verified.holds(&digest, now_secs) {
            return Ok(ClientCertVerified::assertion());
        }
        let cert = match X509Certificate::from_der(end_entity.as_ref()) {
            Ok((_, cert)) => cert,
            Err(error) => {
                let refusal = Refusal::new(
                    RefusalReason::Malformed,
                    &format!("the certificate cannot be parsed: {error}"),
                );
                refusal.log("-", "-", "-");
                return Err(refusal.into_refused());
            }
        };
        let outcome = if cert.version() == X509Version::V1 {
            self.verify_v1(&cert, end_entity, intermediates, now)
        } else {
            self.webpki
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(Refusal::from_webpki)
                .and_then(|_| self.check_version_1_crls(end_entity, intermediates, now))
        };
        match outcome {
            Ok(()) => {
                if let Some(window) = self.valid_window(&cert, intermediates) {
                    self.verified.remember(digest, window);
                }
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                refusal.log(
                    &rfc4514(cert.subject()),
                    &rfc4514(cert.issuer()),
                    &serial_hex(cert.raw_serial()),
                );
                Err(refusal.into_refused())
            }
        }
    }
}

impl ClientVerifierBuilder {
    /// Checks client certificates (leaf and intermediates) against these CRLs.
    ///
    /// A CA without a loaded CRL has no revocation information, so its certificates are not
    /// checked for revocation (the CRLs were already tied to configured CAs when loaded). Expired
    /// CRLs (past nextUpdate) are still applied unless [`Self::refuse_expired_crls`] is chosen:
    /// refusing every client because a CRL was not refreshed in time would turn a missed cron
    /// job into an outage.
    pub fn with_crls(mut self, crls: RevocationLists) -> Self {
        self.crls = crls;
        self
    }

    /// Lets clients without a certificate finish the handshake (ngrok's "request" strategy), so a
    /// later layer can answer them with a 403 page. Overrides the default of requiring a
    /// certificate; a certificate that is presented is still verified and refused when invalid.
    pub fn allow_unauthenticated(mut self) -> Self {
        self.allow_unauthenticated = true;
        self
    }

    /// Leaves the CA names out of the CertificateRequest. By default they are sent so that
    /// clients holding several certificates pick the right one; a large bundle can make the
    /// message too big for some clients, and naming the CAs tells anyone which ones are trusted.
    pub fn without_ca_hints(mut self) -> Self {
        self.ca_hints = false;
        self
    }

    /// Refuses every client of a CA whose CRL is past its nextUpdate (alert `unknown_ca`, as
    /// rustls and OpenSSL do when revocation status cannot be determined). Overrides the default
    /// of applying a stale CRL as it is.
    pub fn refuse_expired_crls(mut self) -> Self {
        self.refuse_expired_crls = true;
        self
    }

    /// Builds the verifier, ready for `ServerConfig::builder().with_client_cert_verifier(..)`.
    pub fn build(self) -> Result<Arc<ClientVerifier>, TrustError> {
        if self.cas.is_empty() {
            return Err(TrustError::NoCas);
        }
        let mut roots = RootCertStore::empty();
        for ca in self.cas.iter() {
            roots
                .add(ca.der().clone())
                .map_err(|e| TrustError::BadCertificate {
                    path: ca.source().to_owned(),
                    position: ca.position(),
                    detail: format!("not usable as a trust anchor: {e}"),
                })?;
        }
        let provider = Arc::new(provider());
        let algorithms = provider.signature_verification_algorithms;
        let mut webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(self.crls.for_webpki())
            .allow_unknown_revocation_status();
        if self.allow_unauthenticated {
            webpki = webpki.allow_unauthenticated();
        }
        if !self.ca_hints {
            webpki = webpki.clear_root_hint_subjects();
        }
        if self.refuse_expired_crls {
            webpki = webpki.enforce_revocation_expiration();
        }
        let webpki = webpki.build().map_err(|e| TrustError::Verifier {
            detail: e.to_string(),
        })?;
        Ok(Arc::new(ClientVerifier {
            webpki,
            cas: self.cas,
            crls: self.crls,
            algorithms,
            mandatory: !self.allow_unauthenticated,
            refuse_expired_crls: self.refuse_expired_crls,
            verified: VerifiedChains::default(),
        }))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_with_reason(end_entity, intermediates, now)
            .map_err(|refused| refused.error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let outcome = match v1_public_key(cert) {
            Some(spki) => verify_tls12_with_key(message, &spki, dss, &self.algorithms),
            None => self.webpki.verify_tls12_signature(message, cert, dss),
        };
        log_signature_refusal(cert, outcome)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let outcome = match v1_public_key(cert) {
            Some(spki) => rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &SubjectPublicKeyInfoDer::from(spki.as_slice()),
                dss,
                &self.algorithms,
            ),
            None => self.webpki.verify_tls13_signature(message, cert, dss),
        };
        log_signature_refusal(cert, outcome)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A client certificate the verifier refused: the stable reason and the error that makes rustls
/// send the reason's alert.
#[derive(Debug, Clone)]
pub struct CertificateRefused {
    /// Why, as audit events and metrics name it.
    pub reason: RefusalReason,
    /// What rustls aborts the handshake with.
    pub error: rustls::Error,
}

/// One refusal: the stable reason, a sentence for the log, and the error rustls got, if any.
struct Refusal {
    reason: RefusalReason,
    detail: String,
    original: Option<rustls::Error>,
}

impl Refusal {
    fn new(reason: RefusalReason, detail: &str) -> Refusal {
        Refusal {
            reason,
            detail: detail.to_owned(),
            original: None,
        }
    }

    fn from_crl(finding: CrlFinding<'_>) -> Refusal {
        match finding {
            CrlFinding::Stale(path) => Refusal::new(
                RefusalReason::UnknownCa,
                &format!(
                    "the CRL of the issuing CA ({}) is past its nextUpdate and crl_expired = \"refuse\"; load a fresh CRL",
                    path.display()
                ),
            ),
            CrlFinding::Revoked(path) => Refusal::new(
                RefusalReason::Revoked,
                &format!(
                    "a loaded CRL of the issuing CA ({}) lists the certificate",
                    path.display()
                ),
            ),
        }
    }

    fn from_webpki(error: rustls::Error) -> Refusal {
        let reason = match &error {
            rustls::Error::InvalidCertificate(certificate_error) => {
                RefusalReason::from_certificate_error(certificate_error)
            }
            _ => RefusalReason::Malformed,
        };
        Refusal {
            reason,
            detail: error.to_string(),
            original: Some(error),
        }
    }

    /// The one log line of a refusal; the gateway's per-connection span adds the peer address.
    fn log(&self, subject: &str, issuer: &str, serial: &str) {
        tracing::warn!(
            reason = self.reason.as_str(),
            subject,
            issuer,
            serial,
            detail = %self.detail,
            "client certificate refused"
        );
    }

    /// The refusal as the public API reports it.
    fn into_refused(self) -> CertificateRefused {
        CertificateRefused {
            reason: self.reason,
            error: self.into_error(),
        }
    }

    /// The error for rustls, chosen so that the alert rustls derives from it is the one the
    /// reason promises: webpki's own error when it already maps to that alert (it carries more
    /// context), otherwise the plain certificate error for the reason.
    fn into_error(self) -> rustls::Error {
        let wanted = self.reason.alert();
        if let Some(rustls::Error::InvalidCertificate(error)) = &self.original
            && AlertDescription::from(error.clone()) == wanted
        {
            return rustls::Error::InvalidCertificate(error.clone());
        }
        let error = match self.reason {
            RefusalReason::UnknownCa => CertificateError::UnknownIssuer,
            RefusalReason::Expired => CertificateError::Expired,
            RefusalReason::NotYetValid => CertificateError::NotValidYet,
            RefusalReason::Revoked => CertificateError::Revoked,
            RefusalReason::WrongUsage => CertificateError::InvalidPurpose,
            RefusalReason::NoCertificate => return rustls::Error::NoCertificatesPresented,
            // bad_certificate is the alert for "contained signatures that did not verify
            // correctly" (RFC 8446 6.2); rustls would send decrypt_error for BadSignature.
            RefusalReason::BadSignature | RefusalReason::Malformed => CertificateError::BadEncoding,
        };
        rustls::Error::InvalidCertificate(error)
    }
}

/// The smallest RSA modulus the provider verifies signatures with (aws-lc-rs's
/// `RSA_PKCS1_2048_8192_*` and `RSA_PSS_2048_8192_*`).
const MIN_RSA_BITS: usize = 2048;

/// Logs a refused CertificateVerify (the client's handshake signature). It fails after the
/// certificate itself was accepted, and the gateway leaves certificate errors to this verifier,
/// so without this line the refusal would leave nothing in the log. The error goes back to
/// rustls unchanged (alert `decrypt_error`, counted as `bad_signature`).
fn log_signature_refusal(
    cert: &CertificateDer<'_>,
    outcome: Result<HandshakeSignatureValid, rustls::Error>,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let Err(rustls::Error::InvalidCertificate(error)) = &outcome else {
        return outcome;
    };
    let parsed = X509Certificate::from_der(cert.as_ref())
        .ok()
        .map(|(_, parsed)| parsed);
    let detail = match parsed.as_ref().and_then(rsa_bits) {
        Some(bits) if bits < MIN_RSA_BITS => format!(
            "the client's key is RSA-{bits}: RSA keys shorter than {MIN_RSA_BITS} bits are not accepted; reissue the client certificate with rsa-2048 or ecdsa-p256"
        ),
        _ => format!(
            "the client's handshake signature (CertificateVerify) does not verify with its certificate's key ({error}); the client must sign with the private key of the certificate it presents"
        ),
    };
    let refusal = Refusal::new(RefusalReason::from_certificate_error(error), &detail);
    match &parsed {
        Some(parsed) => refusal.log(
            &rfc4514(parsed.subject()),
            &rfc4514(parsed.issuer()),
            &serial_hex(parsed.raw_serial()),
        ),
        None => refusal.log("-", "-", "-"),
    }
    outcome
}

/// The size in bits of the certificate's RSA modulus; `None` for other keys.
fn rsa_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
        return None;
    };
    let modulus = rsa.modulus;
    let first = modulus.iter().position(|byte| *byte != 0)?;
    let leading_zero_bits = modulus[first].leading_zeros() as usize;
    Some((modulus.len() - first) * 8 - leading_zero_bits)
}

/// True when `cert` parses and its subject is exactly `subject_der`.
fn subject_is(cert: &CertificateDer<'_>, subject_der: &[u8]) -> bool {
    X509Certificate::from_der(cert.as_ref())
        .map(|(_, parsed)| parsed.subject().as_raw() == subject_der)
        .unwrap_or(false)
}

/// The SubjectPublicKeyInfo of an X.509 v1 certificate, whose handshake signature webpki cannot
/// check because it refuses to parse v1 certificates at all. `None` for every other certificate.
fn v1_public_key(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    (parsed.version() == X509Version::V1).then(|| parsed.public_key().raw.to_vec())
}

/// TLS 1.2 CertificateVerify with a bare key: every algorithm mapped to the scheme is tried, as
/// rustls does for certificates.
fn verify_tls12_with_key(
    message: &[u8],
    spki_der: &[u8],
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, candidates)| *candidates)
        .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
    let key = split_spki(spki_der).ok_or(CertificateError::BadEncoding)?;
    let mut matched = false;
    for candidate in candidates {
        if candidate.public_key_alg_id().as_ref() != key.algorithm {
            continue;
        }
        matched = true;
        if candidate
            .verify_signature(key.key, message, dss.signature())
            .is_ok()
        {
            return Ok(HandshakeSignatureValid::assertion());
        }
    }
    #[allow(deprecated)]
    Err(if matched {
        CertificateError::BadSignature
    } else {
        CertificateError::UnsupportedSignatureAlgorithm
    }
    .into())
}
