//! Why a client certificate was refused, as stable names for logs, audit events and metrics.

use rustls::{AlertDescription, CertificateError};

/// The cause of a refused client certificate, stable across releases so dashboards and alerts
/// can key on [`RefusalReason::as_str`].
///
/// | reason           | TLS alert the client receives |
/// |------------------|-------------------------------|
/// | `no_certificate` | `certificate_required`        |
/// | `unknown_ca`     | `unknown_ca`                  |
/// | `expired`        | `certificate_expired`         |
/// | `not_yet_valid`  | `certificate_expired`         |
/// | `revoked`        | `certificate_revoked`         |
/// | `wrong_usage`    | `unsupported_certificate`     |
/// | `bad_signature`  | `bad_certificate`             |
/// | `malformed`      | `bad_certificate`             |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The client sent no certificate while one is required.
    NoCertificate,
    /// No configured CA issued the certificate (or its chain does not lead to one).
    UnknownCa,
    /// A signature in the chain does not verify, or uses an algorithm that is not accepted.
    BadSignature,
    /// The certificate (or one in its chain) is past its notAfter.
    Expired,
    /// The certificate (or one in its chain) is before its notBefore.
    NotYetValid,
    /// A loaded CRL lists the certificate or one of its intermediates.
    Revoked,
    /// The certificate's extended key usage does not allow TLS client authentication.
    WrongUsage,
    /// The certificate cannot be parsed or breaks a structural rule of X.509.
    Malformed,
}

impl RefusalReason {
    /// Every reason, for tests and for pre-registering metric labels.
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::NoCertificate,
        RefusalReason::UnknownCa,
        RefusalReason::BadSignature,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::Revoked,
        RefusalReason::WrongUsage,
        RefusalReason::Malformed,
    ];

    /// The reason's stable snake_case name, e.g. `unknown_ca`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalReason::NoCertificate => "no_certificate",
            RefusalReason::UnknownCa => "unknown_ca",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::Expired => "expired",
            RefusalReason::NotYetValid => "not_yet_valid",
            RefusalReason::Revoked => "revoked",
            RefusalReason::WrongUsage => "wrong_usage",
            RefusalReason::Malformed => "malformed",
        }
    }

    /// The TLS alert a client receives for this reason, as documented for operators.
    pub fn alert(&self) -> AlertDescription {
        match self {
            RefusalReason::NoCertificate => AlertDescription::CertificateRequired,
            RefusalReason::UnknownCa => AlertDescription::UnknownCA,
            RefusalReason::Expired | RefusalReason::NotYetValid => {
                AlertDescription::CertificateExpired
            }
            RefusalReason::Revoked => AlertDescription::CertificateRevoked,
            RefusalReason::WrongUsage => AlertDescription::UnsupportedCertificate,
            RefusalReason::BadSignature | RefusalReason::Malformed => {
                AlertDescription::BadCertificate
            }
        }
    }

    /// Maps the error a failed server-side handshake returned back to a reason, when it was about
    /// the client certificate.
    ///
    /// The [`crate::ClientVerifier`] already logs every refusal it makes with the precise reason;
    /// this is for the one refusal rustls makes itself (no certificate, which the gateway logs) and
    /// for counting. A bad signature travels as `bad_certificate` like a malformed certificate, so
    /// from the error alone it reads back as [`RefusalReason::Malformed`].
    pub fn from_tls_error(error: &rustls::Error) -> Option<RefusalReason> {
        match error {
            rustls::Error::NoCertificatesPresented => Some(RefusalReason::NoCertificate),
            rustls::Error::InvalidCertificate(error) => Some(Self::from_certificate_error(error)),
            _ => None,
        }
    }

    /// Like [`RefusalReason::from_tls_error`] for the `std::io::Error` that tokio-rustls's
    /// acceptor returns, which wraps the rustls error.
    pub fn from_io_error(error: &std::io::Error) -> Option<RefusalReason> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(Self::from_tls_error)
    }

    /// Classifies a certificate error as rustls and webpki report it.
    pub(crate) fn from_certificate_error(error: &CertificateError) -> RefusalReason {
        #[allow(deprecated)]
        match error {
            CertificateError::UnknownIssuer
            | CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => RefusalReason::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                RefusalReason::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                RefusalReason::NotYetValid
            }
            CertificateError::Revoked => RefusalReason::Revoked,
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                RefusalReason::BadSignature
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                RefusalReason::WrongUsage
            }
            _ => RefusalReason::Malformed,
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_are_not_about_the_client_certificate_have_no_reason() {
        let protocol =
            rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic);
        assert_eq!(RefusalReason::from_tls_error(&protocol), None);
        let plain_io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(RefusalReason::from_io_error(&plain_io), None);
    }

    #[test]
    #[allow(deprecated)] // webpki still reports the context-free variants in places
    fn certificate_errors_map_to_their_reasons() {
        let table = [
            (CertificateError::UnknownIssuer, RefusalReason::UnknownCa),
            (CertificateError::Expired, RefusalReason::Expired),
            (CertificateError::NotValidYet, RefusalReason::NotYetValid),
            (CertificateError::Revoked, RefusalReason::Revoked),
            (CertificateError::InvalidPurpose, RefusalReason::WrongUsage),
            (CertificateError::BadEncoding, RefusalReason::Malformed),
            (
                CertificateError::UnsupportedSignatureAlgorithm,
                RefusalReason::BadSignature,
            ),
        ];
        for (error, reason) in table {
            let error = rustls::Error::InvalidCertificate(error);
            assert_eq!(
                RefusalReason::from_tls_error(&error),
                Some(reason),
                "{error}"
            );
        }
    }
}
