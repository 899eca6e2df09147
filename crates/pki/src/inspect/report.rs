//! The report types: what inspect found in a file, item by item, as printed and as JSON.

use serde::Serialize;

/// One item found in an inspected file; serialised with a `kind` field naming the variant.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// An X.509 certificate.
    Certificate(CertificateReport),
    /// A PKCS#10 certificate signing request.
    CertificateRequest(CsrReport),
    /// A certificate revocation list.
    Crl(CrlReport),
    /// A private key: only its type and size, never its material.
    PrivateKey(KeyReport),
    /// A public key (SubjectPublicKeyInfo).
    PublicKey(KeyReport),
}

impl Finding {
    /// The warnings attached to this item, so callers can count or filter them without matching.
    pub fn warnings(&self) -> &[String] {
        match self {
            Finding::Certificate(report) => &report.warnings,
            Finding::CertificateRequest(report) => &report.warnings,
            Finding::Crl(report) => &report.warnings,
            Finding::PrivateKey(report) | Finding::PublicKey(report) => &report.warnings,
        }
    }
}

/// What a certificate says about itself, and what a gateway would object to.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// The file the certificate came from.
    pub file: String,
    /// 1-based position of the item in the file.
    pub item: usize,
    /// Subject distinguished name, `CN=..., O=...`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number in uppercase hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// X.509 version (1 or 3 in practice).
    pub version: u32,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
    /// Public key type and size, e.g. `ECDSA P-256` or `RSA 4096`.
    pub public_key: String,
    /// Signature algorithm name, e.g. `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    /// Subject alternative names as `DNS:..`, `IP:..`, `URI:..`, `email:..`.
    pub subject_alt_names: Vec<String>,
    /// Key usage bits by name; `None` when the extension is absent.
    pub key_usage: Option<Vec<String>>,
    /// Extended key usages by name (`serverAuth`, `clientAuth`, ...); `None` when absent.
    pub extended_key_usage: Option<Vec<String>>,
    /// Basic constraints; `None` when the extension is absent.
    pub basic_constraints: Option<BasicConstraintsReport>,
    /// Whether subject and issuer are the same name (a root or a self-signed leaf).
    pub self_signed: bool,
    /// SHA-256 of the DER, colon-separated uppercase hex as `openssl x509 -fingerprint -sha256` prints.
    pub sha256_fingerprint: String,
    /// Plain-language reasons a gateway would refuse or mistrust this certificate.
    pub warnings: Vec<String>,
}

/// The basicConstraints extension, which decides whether a certificate may act as a CA.
#[derive(Debug, Clone, Serialize)]
pub struct BasicConstraintsReport {
    /// `cA` flag.
    pub ca: bool,
    /// Maximum number of intermediate CAs below this one, when constrained.
    pub path_len: Option<u32>,
    /// Whether the extension is marked critical (RFC 5280 requires it for CAs).
    pub critical: bool,
}

/// What a certificate signing request asks for.
#[derive(Debug, Clone, Serialize)]
pub struct CsrReport {
    /// The file the CSR came from.
    pub file: String,
    /// 1-based position of the item in the file.
    pub item: usize,
    /// Requested subject.
    pub subject: String,
    /// Public key type and size.
    pub public_key: String,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// Subject alternative names requested through the extensionRequest attribute.
    pub requested_subject_alt_names: Vec<String>,
    /// Whether the CSR's self-signature verifies with its own public key.
    pub signature_valid: bool,
    /// Plain-language problems.
    pub warnings: Vec<String>,
}

/// What a CRL revokes and until when it is fresh.
#[derive(Debug, Clone, Serialize)]
pub struct CrlReport {
    /// The file the CRL came from.
    pub file: String,
    /// 1-based position of the item in the file.
    pub item: usize,
    /// The CA that signed the CRL.
    pub issuer: String,
    /// CRL version (2 when extensions are used).
    pub version: u32,
    /// When the CRL was issued, RFC 3339 UTC.
    pub this_update: String,
    /// When the next CRL is due, RFC 3339 UTC.
    pub next_update: Option<String>,
    /// The CRL number extension in decimal, which must grow with each CRL.
    pub crl_number: Option<String>,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// Every revoked certificate listed.
    pub revoked: Vec<RevokedEntry>,
    /// Plain-language problems.
    pub warnings: Vec<String>,
}

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedEntry {
    /// Serial in uppercase hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// When it was revoked, RFC 3339 UTC.
    pub revoked_at: String,
    /// RFC 5280 reason code name (`keyCompromise`, ...), when given.
    pub reason: Option<String>,
}

/// A key's type and size, which is all moat ever reveals about a key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The file the key came from.
    pub file: String,
    /// 1-based position of the item in the file.
    pub item: usize,
    /// Container format: `PKCS#8`, `encrypted PKCS#8`, `PKCS#1`, `SEC1`, `SubjectPublicKeyInfo`.
    pub format: String,
    /// Whether the key is protected by a passphrase.
    pub encrypted: bool,
    /// Key type and size (e.g. `RSA 4096`), `None` while encrypted.
    pub key_type: Option<String>,
    /// Plain-language problems.
    pub warnings: Vec<String>,
}
