//! The one error type of the trust layer: every variant names the file or item and the fix.

use std::path::PathBuf;

/// Why CA bundles, CRLs or a presented certificate chain could not be turned into trust.
///
/// Each message names the file (and the certificate's position and subject where there is one),
/// the cause and what to do, so the CLI can print it as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A CA or CRL file could not be read from disk.
    #[error("{}: cannot read the file: {source}; check the path and its permissions", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A file looked like PEM but a block in it could not be decoded.
    #[error("{}: invalid PEM ({detail}); expected -----BEGIN {expected}----- blocks", path.display())]
    Pem {
        /// The file that failed.
        path: PathBuf,
        /// The PEM label the file should hold, e.g. `CERTIFICATE` or `X509 CRL`.
        expected: &'static str,
        /// What the PEM decoder said.
        detail: String,
    },

    /// A CA file holds no certificate at all.
    #[error(
        "{}: holds no certificate (no -----BEGIN CERTIFICATE----- block); give the PEM file of your CA certificate(s)",
        path.display()
    )]
    NoCertificate {
        /// The file that was empty of certificates.
        path: PathBuf,
    },

    /// A certificate in a CA file is not valid X.509 DER.
    #[error(
        "{}: certificate #{position} cannot be parsed ({detail}); replace it with a valid X.509 certificate",
        path.display()
    )]
    BadCertificate {
        /// The CA file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        position: usize,
        /// What the parser said.
        detail: String,
    },

    /// A certificate in a CA bundle is not allowed to sign certificates (RFC 5280 4.2.1.9).
    #[error(
        "{}: certificate #{position} ({subject}) is not a CA ({why}); remove it from the bundle",
        path.display()
    )]
    NotACa {
        /// The CA file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        position: usize,
        /// The certificate's subject (RFC 4514).
        subject: String,
        /// Why it is not a CA, e.g. `basicConstraints cA=false`.
        why: &'static str,
    },

    /// The verifier was asked for without any CA to trust.
    #[error(
        "no CA certificate configured; give at least one file of the CAs that sign client certificates"
    )]
    NoCas,

    /// A CRL file holds no CRL.
    #[error(
        "{}: holds no CRL (neither a -----BEGIN X509 CRL----- block nor a DER CRL); give the file made by `openssl ca -gencrl` or `cfssl gencrl`",
        path.display()
    )]
    NoCrl {
        /// The file that was empty of CRLs.
        path: PathBuf,
    },

    /// A CRL could not be parsed or is of a kind the verifier cannot use.
    #[error("{}: CRL #{position} cannot be used ({detail}); {fix}", path.display())]
    BadCrl {
        /// The CRL file.
        path: PathBuf,
        /// 1-based position of the CRL in the file.
        position: usize,
        /// What is wrong with it.
        detail: String,
        /// What to do about it.
        fix: &'static str,
    },

    /// A CRL was issued by a CA that is not in the configured bundles.
    #[error(
        "{}: CRL #{position} was issued by {issuer}, which is not one of the configured CAs; add that CA to the CA files or remove the CRL",
        path.display()
    )]
    CrlUnknownIssuer {
        /// The CRL file.
        path: PathBuf,
        /// 1-based position of the CRL in the file.
        position: usize,
        /// The CRL's issuer (RFC 4514).
        issuer: String,
    },

    /// A CRL names a configured CA as issuer but its signature does not verify with that CA's key.
    #[error(
        "{}: CRL #{position} names {issuer} as issuer but its signature does not verify with that CA's key; regenerate the CRL with the CA's own key",
        path.display()
    )]
    CrlBadSignature {
        /// The CRL file.
        path: PathBuf,
        /// 1-based position of the CRL in the file.
        position: usize,
        /// The CRL's issuer (RFC 4514).
        issuer: String,
    },

    /// A CA may not sign CRLs (its keyUsage lacks cRLSign), so its CRLs cannot be trusted.
    #[error(
        "{}: CRL #{position} is signed by {issuer}, whose keyUsage does not include cRLSign; reissue the CA with cRLSign or drop the CRL",
        path.display()
    )]
    CrlIssuerNotCrlSigner {
        /// The CRL file.
        path: PathBuf,
        /// 1-based position of the CRL in the file.
        position: usize,
        /// The CRL's issuer (RFC 4514).
        issuer: String,
    },

    /// A peer presented no certificate where one was needed.
    #[error("the client presented no certificate")]
    EmptyChain,

    /// A presented certificate is not valid X.509 DER.
    #[error("the client certificate cannot be parsed: {detail}")]
    MalformedCertificate {
        /// What the parser said.
        detail: String,
    },

    /// rustls refused to build the verifier from the CAs and CRLs.
    #[error("cannot build the client certificate verifier: {detail}")]
    Verifier {
        /// What rustls said.
        detail: String,
    },
}
