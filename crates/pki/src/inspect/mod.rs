//! Reads certificates, CSRs, CRLs and keys and reports what a gateway cares about (never key material).
//!
//! Every PEM section (or a single DER object) becomes one [`Finding`]. Findings carry plain-language
//! warnings for what would make a gateway refuse the item: expired, not yet valid, a non-CA in a
//! CA bundle, a client certificate without `clientAuth`, an X.509 v1 certificate, and so on.

mod keys;
mod render;

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::serial::{Fingerprint, Serial};

/// Why a file could not be inspected; each message names the file and the item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The file could not be read at all.
    #[error("{path}: cannot read the file: {source}")]
    Read {
        /// The file as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing moat recognises.
    #[error(
        "{path}: no certificate, CSR, CRL or key found; expected PEM (-----BEGIN ...-----) or a single DER object"
    )]
    NothingFound {
        /// The file as given.
        path: String,
    },
    /// A PEM section or DER object is labelled as something but does not parse as it.
    #[error("{path}: item #{item} ({label}) does not parse: {reason}")]
    Unparsable {
        /// The file as given.
        path: String,
        /// 1-based position of the item in the file.
        item: usize,
        /// The PEM label (or what the DER was taken for).
        label: String,
        /// The parser's explanation.
        reason: String,
    },
    /// Serialising the findings to JSON failed (not expected for these plain structures).
    #[error("cannot encode the findings as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

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

/// Inspects one file (PEM with any number of sections, or one DER object) at the current time.
pub fn inspect_file(path: &Path) -> Result<Vec<Finding>, InspectError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| InspectError::Read {
        path: name.clone(),
        source,
    })?;
    inspect_bytes(&name, &bytes, OffsetDateTime::now_utc())
}

/// Inspects the contents of a file named `name`, judging validity at `now` (fixed in tests).
pub fn inspect_bytes(
    name: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<Vec<Finding>, InspectError> {
    let objects = split_objects(name, bytes)?;
    if objects.is_empty() {
        return Err(InspectError::NothingFound {
            path: name.to_owned(),
        });
    }
    let mut findings = Vec::with_capacity(objects.len());
    let mut certificates = Vec::new();
    let mut private_keys = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let item = index + 1;
        let unparsable = |reason: String| InspectError::Unparsable {
            path: name.to_owned(),
            item,
            label: object.label.clone(),
            reason,
        };
        let finding = match object.kind {
            ObjectKind::Certificate => {
                let (_, cert) = X509Certificate::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                let report = certificate_report(name, item, &cert, &object.der, now);
                certificates.push(CertificateFacts::of(&cert, findings.len()));
                Finding::Certificate(report)
            }
            ObjectKind::Csr => {
                let (_, csr) = X509CertificationRequest::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::CertificateRequest(csr_report(name, item, &csr))
            }
            ObjectKind::Crl => {
                let (_, crl) = CertificateRevocationList::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::Crl(crl_report(name, item, &crl, now))
            }
            ObjectKind::PrivateKey(format) => {
                let report = keys::private_key_report(name, item, format, &object.der)
                    .map_err(unparsable)?;
                private_keys.push((findings.len(), format, object.der.as_slice()));
                Finding::PrivateKey(report)
            }
            ObjectKind::PublicKey => {
                let (_, spki) = SubjectPublicKeyInfo::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::PublicKey(KeyReport {
                    file: name.to_owned(),
                    item,
                    format: "SubjectPublicKeyInfo".to_owned(),
                    encrypted: false,
                    key_type: Some(describe_public_key(&spki)),
                    warnings: public_key_warnings(&spki),
                })
            }
        };
        findings.push(finding);
    }
    add_bundle_warnings(name, &certificates, &mut findings);
    add_key_pairing_warnings(&certificates, &private_keys, &mut findings);
    Ok(findings)
}

/// In a combined file (certificate and key, as `curl --cert` takes it), flags a key that belongs
/// to none of the certificates beside it.
fn add_key_pairing_warnings(
    certificates: &[CertificateFacts],
    private_keys: &[(usize, keys::PrivateKeyFormat, &[u8])],
    findings: &mut [Finding],
) {
    if certificates.is_empty() {
        return;
    }
    for (finding_index, format, der) in private_keys {
        // Encrypted keys cannot be compared without their passphrase.
        let Some(public_key) = keys::public_key_of(*format, der) else {
            continue;
        };
        if certificates
            .iter()
            .any(|facts| facts.public_key_bits == public_key)
        {
            continue;
        }
        let names: Vec<&str> = certificates
            .iter()
            .map(|facts| facts.common_name.as_str())
            .collect();
        if let Some(Finding::PrivateKey(report)) = findings.get_mut(*finding_index) {
            report.warnings.push(format!(
                "this key does not belong to the certificate(s) in the same file ({}): TLS clients using this file (curl --cert) fail the handshake; pair the certificate with its own key",
                names.join(", ")
            ));
        }
    }
}

/// A parser error phrased with the usual cause and fix.
fn corrupt(error: impl std::fmt::Display) -> String {
    format!("{error}; check that the file is complete and not corrupted")
}

/// Encodes findings as one pretty-printed JSON array for `--json`.
pub fn findings_to_json(findings: &[Finding]) -> Result<String, InspectError> {
    Ok(serde_json::to_string_pretty(findings)?)
}

/// Renders findings for a person: one block per item, warnings last in each block.
pub fn findings_to_text(findings: &[Finding]) -> String {
    render::text(findings)
}

/// What an input object was taken for, from its PEM label or by trying DER parsers.
#[derive(Debug, Clone, Copy)]
enum ObjectKind {
    Certificate,
    Csr,
    Crl,
    PrivateKey(keys::PrivateKeyFormat),
    PublicKey,
}

/// One PEM section or the whole DER file.
struct RawObject {
    label: String,
    kind: ObjectKind,
    der: Vec<u8>,
}

/// Splits a file into objects: every recognised PEM section, or the whole file as DER.
fn split_objects(name: &str, bytes: &[u8]) -> Result<Vec<RawObject>, InspectError> {
    if bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return split_pem(name, bytes);
    }
    Ok(classify_der(bytes).into_iter().collect())
}

fn split_pem(name: &str, bytes: &[u8]) -> Result<Vec<RawObject>, InspectError> {
    let (cleaned, legacy_encrypted) = strip_pem_headers(bytes);
    let mut objects = Vec::new();
    for (index, section) in x509_parser::pem::Pem::iter_from_buffer(&cleaned).enumerate() {
        let section = section.map_err(|error| InspectError::Unparsable {
            path: name.to_owned(),
            item: index + 1,
            label: "PEM".to_owned(),
            reason: format!("invalid PEM ({error}); check that the file is complete"),
        })?;
        let legacy = legacy_encrypted.contains(&index);
        let kind = match section.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => ObjectKind::Certificate,
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => ObjectKind::Csr,
            "X509 CRL" => ObjectKind::Crl,
            "PRIVATE KEY" => ObjectKind::PrivateKey(keys::PrivateKeyFormat::Pkcs8),
            "ENCRYPTED PRIVATE KEY" => {
                ObjectKind::PrivateKey(keys::PrivateKeyFormat::EncryptedPkcs8)
            }
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" if legacy => {
                ObjectKind::PrivateKey(keys::PrivateKeyFormat::LegacyEncryptedPem)
            }
            "RSA PRIVATE KEY" => ObjectKind::PrivateKey(keys::PrivateKeyFormat::Pkcs1),
            "EC PRIVATE KEY" => ObjectKind::PrivateKey(keys::PrivateKeyFormat::Sec1),
            "PUBLIC KEY" => ObjectKind::PublicKey,
            // Parameters and other sections (e.g. "EC PARAMETERS" before a SEC1 key) say nothing
            // a gateway cares about.
            _ => continue,
        };
        objects.push(RawObject {
            label: section.label,
            kind,
            der: section.contents,
        });
    }
    Ok(objects)
}

/// Drops RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: ...`) that the PEM decoder
/// does not accept, and returns the 0-based indexes of the sections that carried them.
fn strip_pem_headers(bytes: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut cleaned = Vec::with_capacity(bytes.len());
    let mut legacy_encrypted = Vec::new();
    let mut section: Option<usize> = None;
    let mut sections_seen = 0;
    for line in bytes.split_inclusive(|byte| *byte == b'\n') {
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim();
        if trimmed.starts_with("-----BEGIN ") {
            section = Some(sections_seen);
            sections_seen += 1;
        } else if trimmed.starts_with("-----END ") {
            section = None;
        } else if let Some(index) = section {
            if trimmed.is_empty() {
                continue;
            }
            if trimmed.contains(':') {
                if trimmed.starts_with("Proc-Type:") && trimmed.contains("ENCRYPTED") {
                    legacy_encrypted.push(index);
                }
                continue;
            }
        }
        cleaned.extend_from_slice(line);
    }
    (cleaned, legacy_encrypted)
}

/// Takes a DER blob for the first structure it parses as, most common first.
fn classify_der(der: &[u8]) -> Option<RawObject> {
    let (label, kind) = if X509Certificate::from_der(der).is_ok() {
        ("certificate (DER)", ObjectKind::Certificate)
    } else if CertificateRevocationList::from_der(der).is_ok() {
        ("CRL (DER)", ObjectKind::Crl)
    } else if X509CertificationRequest::from_der(der).is_ok() {
        ("CSR (DER)", ObjectKind::Csr)
    } else if SubjectPublicKeyInfo::from_der(der).is_ok() {
        ("public key (DER)", ObjectKind::PublicKey)
    } else {
        let format = keys::detect_der_private_key(der)?;
        ("private key (DER)", ObjectKind::PrivateKey(format))
    };
    Some(RawObject {
        label: label.to_owned(),
        kind,
        der: der.to_vec(),
    })
}

/// The facts about each certificate in a file that whole-file checks need.
struct CertificateFacts {
    finding_index: usize,
    is_ca: bool,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    common_name: String,
    version: u32,
    has_basic_constraints: bool,
    public_key_bits: Vec<u8>,
}

impl CertificateFacts {
    fn of(cert: &X509Certificate<'_>, finding_index: usize) -> Self {
        let basic_constraints = cert.basic_constraints().ok().flatten();
        Self {
            finding_index,
            is_ca: basic_constraints.as_ref().is_some_and(|bc| bc.value.ca),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            common_name: short_name(&cert.subject().to_string()),
            version: cert.version().0 + 1,
            has_basic_constraints: basic_constraints.is_some(),
            public_key_bits: cert.public_key().subject_public_key.data.to_vec(),
        }
    }
}

/// Flags non-CA certificates in a file that is used as a CA bundle.
///
/// A file is taken for a CA bundle when its name says so (`ca.pem`, `cas.pem`, `root-ca.crt`,
/// `cacert.pem`, ...) or when it holds several certificates that are not simply a leaf followed
/// by its own issuers (the usual `fullchain.pem`, which is fine).
fn add_bundle_warnings(name: &str, certificates: &[CertificateFacts], findings: &mut [Finding]) {
    let named_like_ca = file_named_like_ca(name);
    let several = certificates.len() > 1;
    if !named_like_ca && (!several || is_leaf_then_issuers(certificates)) {
        return;
    }
    let count = certificates.len();
    for (position, facts) in certificates.iter().enumerate() {
        if facts.is_ca {
            continue;
        }
        let cause = if facts.version < 3 {
            "X.509 v1, so no basicConstraints".to_owned()
        } else if facts.has_basic_constraints {
            "basicConstraints cA=false".to_owned()
        } else {
            "no basicConstraints extension".to_owned()
        };
        let context = if several {
            format!("this file holds {count} certificates like a CA bundle")
        } else {
            "this file is named like a CA file".to_owned()
        };
        let warning = format!(
            "certificate #{} ({}) is not a CA ({cause}) but {context}; a gateway refuses it as a CA (RFC 5280 4.2.1.9); remove it from the bundle or use a CA certificate",
            position + 1,
            facts.common_name,
        );
        if let Some(Finding::Certificate(report)) = findings.get_mut(facts.finding_index) {
            report.warnings.push(warning);
        }
    }
}

fn file_named_like_ca(name: &str) -> bool {
    let stem = Path::new(name)
        .file_name()
        .map(|file| file.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|token| {
            matches!(
                token,
                "ca" | "cas" | "cacert" | "cacerts" | "root" | "roots"
            )
        })
}

/// True for `leaf, its issuer, that one's issuer, ...` where only the leaf is not a CA.
fn is_leaf_then_issuers(certificates: &[CertificateFacts]) -> bool {
    let Some((leaf, issuers)) = certificates.split_first() else {
        return false;
    };
    !leaf.is_ca
        && issuers.iter().all(|facts| facts.is_ca)
        && certificates
            .windows(2)
            .all(|pair| pair[0].issuer_raw == pair[1].subject_raw)
}

fn certificate_report(
    name: &str,
    item: usize,
    cert: &X509Certificate<'_>,
    der: &[u8],
    now: OffsetDateTime,
) -> CertificateReport {
    let version = cert.version().0 + 1;
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let days_left = (not_after - now).whole_days();

    let subject_alt_names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(describe_general_name)
                .collect()
        })
        .unwrap_or_default();
    let key_usage = cert
        .key_usage()
        .ok()
        .flatten()
        .map(|ku| key_usage_names(ku.value.flags));
    let eku = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| eku.value.clone());
    let extended_key_usage = eku.as_ref().map(extended_key_usage_names);
    let basic_constraints =
        cert.basic_constraints()
            .ok()
            .flatten()
            .map(|bc| BasicConstraintsReport {
                ca: bc.value.ca,
                path_len: bc.value.path_len_constraint,
                critical: bc.critical,
            });
    let is_ca = basic_constraints.as_ref().is_some_and(|bc| bc.ca);

    let mut warnings = Vec::new();
    if now < not_before {
        warnings.push(format!(
            "not yet valid: valid from {} ({} days from now); a gateway refuses it until then",
            rfc3339(not_before),
            (not_before - now).whole_days()
        ));
    }
    if now > not_after {
        warnings.push(format!(
            "expired on {} ({} days ago); a gateway refuses it with certificate_expired; issue a new one",
            rfc3339(not_after),
            (now - not_after).whole_days()
        ));
    }
    if version < 3 {
        warnings.push(
            "X.509 version 1: no extensions (no SANs, key usage or basicConstraints); it cannot be a CA or a server certificate, and many TLS stacks refuse it as a client certificate (moat accepts it only when a configured CA signed it directly); reissue with an extension file (openssl x509 -req -extfile) or with moat pki"
                .to_owned(),
        );
    }
    if is_ca {
        if let Some(names) = &key_usage
            && !names.iter().any(|usage| usage == "keyCertSign")
        {
            warnings.push(
                "a CA whose keyUsage lacks keyCertSign: verifiers refuse the certificates it signs"
                    .to_owned(),
            );
        }
    } else if let Some(eku) = &eku {
        let client_named = Path::new(name)
            .file_name()
            .is_some_and(|file| file.to_string_lossy().to_lowercase().contains("client"));
        if !eku.client_auth && !eku.any && (!eku.server_auth || client_named) {
            warnings.push(format!(
                "extendedKeyUsage ({}) has no clientAuth: a gateway refuses it as a client certificate; issue it with the client profile",
                extended_key_usage_names(eku).join(", ")
            ));
        }
        if eku.server_auth && subject_alt_names.is_empty() {
            warnings.push(
                "a server certificate without subjectAltName: clients ignore the CN and refuse it for any hostname; reissue it with a subjectAltName such as dns:NAME"
                    .to_owned(),
            );
        }
    }
    warnings.extend(public_key_warnings(cert.public_key()));

    CertificateReport {
        file: name.to_owned(),
        item,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        version,
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        days_left,
        public_key: describe_public_key(cert.public_key()),
        signature_algorithm: describe_algorithm(&cert.signature_algorithm),
        subject_alt_names,
        key_usage,
        extended_key_usage,
        basic_constraints,
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        sha256_fingerprint: sha256_fingerprint(der),
        warnings,
    }
}

fn csr_report(name: &str, item: usize, csr: &X509CertificationRequest<'_>) -> CsrReport {
    let info = &csr.certification_request_info;
    let requested_subject_alt_names = csr
        .requested_extensions()
        .map(|extensions| {
            extensions
                .filter_map(|extension| match extension {
                    ParsedExtension::SubjectAlternativeName(san) => Some(
                        san.general_names
                            .iter()
                            .map(describe_general_name)
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    let signature_valid = csr.verify_signature().is_ok();
    let mut warnings = Vec::new();
    if !signature_valid {
        warnings.push(
            "the CSR's signature does not verify with its own public key (altered or corrupted); a CA, moat pki sign included, refuses to sign it; make a new CSR"
                .to_owned(),
        );
    }
    warnings.extend(public_key_warnings(&info.subject_pki));
    CsrReport {
        file: name.to_owned(),
        item,
        subject: info.subject.to_string(),
        public_key: describe_public_key(&info.subject_pki),
        signature_algorithm: describe_algorithm(&csr.signature_algorithm),
        requested_subject_alt_names,
        signature_valid,
        warnings,
    }
}

fn crl_report(
    name: &str,
    item: usize,
    crl: &CertificateRevocationList<'_>,
    now: OffsetDateTime,
) -> CrlReport {
    let next_update = crl.next_update().map(|time| time.to_datetime());
    let mut warnings = Vec::new();
    if let Some(next) = next_update
        && now > next
    {
        warnings.push(format!(
            "stale: its nextUpdate was {} ({} days ago); gateways that enforce CRL freshness refuse every certificate of this CA; publish a new CRL",
            rfc3339(next),
            (now - next).whole_days()
        ));
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedEntry {
            serial: serial_hex(entry.raw_serial()),
            revoked_at: asn1_rfc3339(entry.revocation_date),
            reason: entry.reason_code().map(|(_, code)| reason_name(code.0)),
        })
        .collect();
    CrlReport {
        file: name.to_owned(),
        item,
        issuer: crl.issuer().to_string(),
        version: crl.version().map_or(1, |version| version.0 + 1),
        this_update: asn1_rfc3339(crl.last_update()),
        next_update: next_update.map(rfc3339),
        crl_number: crl.crl_number().map(ToString::to_string),
        signature_algorithm: describe_algorithm(&crl.signature_algorithm),
        revoked,
        warnings,
    }
}

/// RFC 5280 5.3.1 CRLReason names.
fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        other => return format!("reason code {other}"),
    }
    .to_owned()
}

/// Key usage bit names in RFC 5280 order, spelled as in the RFC.
fn key_usage_names(flags: u16) -> Vec<String> {
    const NAMES: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags >> bit & 1 == 1)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

fn extended_key_usage_names(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut names = Vec::new();
    for (present, name) in [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ] {
        if present {
            names.push(name.to_owned());
        }
    }
    names.extend(eku.other.iter().map(ToString::to_string));
    names
}

/// Names a SAN the way openssl and curl print it.
fn describe_general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                format!("IP:{}", std::net::Ipv4Addr::from(octets))
            }
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                format!("IP:{}", std::net::Ipv6Addr::from(octets))
            }
            _ => format!("IP:<{} malformed bytes>", bytes.len()),
        },
        GeneralName::DirectoryName(dn) => format!("dirName:{dn}"),
        other => other.to_string(),
    }
}

/// `RSA 2048`, `ECDSA P-256`, `Ed25519`: what matters when choosing or checking a key.
fn describe_public_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        keys::OID_RSA | keys::OID_RSA_PSS => {
            let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
            format!("RSA {bits}")
        }
        keys::OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|curve| keys::curve_name(&curve.to_id_string()))
                .unwrap_or_else(|| "(unknown curve)".to_owned());
            format!("ECDSA {curve}")
        }
        keys::OID_ED25519 => "Ed25519".to_owned(),
        keys::OID_ED448 => "Ed448".to_owned(),
        _ => describe_algorithm(&spki.algorithm),
    }
}

fn public_key_warnings(spki: &SubjectPublicKeyInfo<'_>) -> Vec<String> {
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid == keys::OID_RSA
        && let Ok(key) = spki.parsed()
    {
        return keys::rsa_size_warning(key.key_size()).into_iter().collect();
    }
    Vec::new()
}

fn describe_algorithm(algorithm: &AlgorithmIdentifier<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    x509_parser::objects::oid2sn(&algorithm.algorithm, registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| algorithm.algorithm.to_id_string())
}

/// Uppercase hex of the serial's magnitude, as `openssl x509 -serial` prints it.
fn serial_hex(raw: &[u8]) -> String {
    Serial::from_der(raw).to_openssl_hex()
}

/// The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it.
fn sha256_fingerprint(der: &[u8]) -> String {
    Fingerprint::of_der(der).to_openssl_hex()
}

/// `CN=name` when the subject has a CN, else the whole subject: short enough for one-line messages.
fn short_name(subject: &str) -> String {
    subject
        .split(", ")
        .find(|part| part.starts_with("CN="))
        .unwrap_or(subject)
        .to_owned()
}

fn asn1_rfc3339(time: ASN1Time) -> String {
    rfc3339(time.to_datetime())
}

/// `2025-01-31T12:00:00Z`, built by hand so no time formatting feature is needed.
fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SerialNumber,
    };

    use super::*;

    /// A UTC instant; tests fix time so that days-left arithmetic is exact.
    fn at(year: i32, month: u8, day: u8, hour: u8) -> OffsetDateTime {
        let month = time::Month::try_from(month).unwrap();
        time::Date::from_calendar_date(year, month, day)
            .unwrap()
            .with_hms(hour, 0, 0)
            .unwrap()
            .assume_utc()
    }

    fn now() -> OffsetDateTime {
        at(2030, 6, 15, 12)
    }

    fn ca() -> (CertificateParams, KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Unit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_before = at(2030, 1, 1, 0);
        params.not_after = at(2031, 1, 1, 0);
        let pem = params.self_signed(&key).unwrap().pem();
        (params, key, pem)
    }

    fn leaf(
        issuer: &Issuer<'_, &KeyPair>,
        cn: &str,
        eku: Vec<ExtendedKeyUsagePurpose>,
        not_after: OffsetDateTime,
    ) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![format!("{cn}.test")]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = eku;
        params.not_before = at(2030, 1, 1, 0);
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x9A, 0x01]));
        params.signed_by(&key, issuer).unwrap().pem()
    }

    fn certificate(finding: &Finding) -> &CertificateReport {
        match finding {
            Finding::Certificate(report) => report,
            other => panic!("expected a certificate, got {other:?}"),
        }
    }

    #[test]
    fn days_left_and_expiry_are_judged_at_the_given_time() {
        let (params, key, ca_pem) = ca();
        let issuer = Issuer::from_params(&params, &key);
        let expired = leaf(
            &issuer,
            "old",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            at(2030, 6, 5, 12),
        );
        let findings = inspect_bytes("ca.pem", ca_pem.as_bytes(), now()).unwrap();
        let ca_report = certificate(&findings[0]);
        assert_eq!(ca_report.days_left, 199);
        assert_eq!(
            ca_report.basic_constraints.as_ref().unwrap().path_len,
            Some(0)
        );
        assert!(ca_report.warnings.is_empty(), "{:?}", ca_report.warnings);

        let findings = inspect_bytes("old.pem", expired.as_bytes(), now()).unwrap();
        let report = certificate(&findings[0]);
        assert_eq!(report.days_left, -10);
        assert_eq!(
            report.serial, "9A01",
            "the DER sign byte is not part of the serial"
        );
        assert!(report.warnings[0].starts_with("expired on 2030-06-05T12:00:00Z (10 days ago)"));
    }

    #[test]
    fn several_issuers_after_a_leaf_form_a_chain_but_two_leaves_do_not() {
        let (params, key, ca_pem) = ca();
        let issuer = Issuer::from_params(&params, &key);
        let far = at(2031, 1, 1, 0);
        let first = leaf(
            &issuer,
            "one",
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            far,
        );
        let second = leaf(
            &issuer,
            "two",
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            far,
        );

        let chain = format!("{first}{ca_pem}");
        let findings = inspect_bytes("fullchain.pem", chain.as_bytes(), now()).unwrap();
        assert!(findings.iter().all(|finding| finding.warnings().is_empty()));

        let two_leaves = format!("{first}{second}");
        let findings = inspect_bytes("certs.pem", two_leaves.as_bytes(), now()).unwrap();
        for (index, finding) in findings.iter().enumerate() {
            let warning = &finding.warnings()[0];
            assert!(
                warning.starts_with(&format!("certificate #{} (CN=", index + 1)),
                "{warning}"
            );
        }
    }

    #[test]
    fn ca_file_names_are_recognised_by_their_words() {
        for name in [
            "ca.pem",
            "cas.pem",
            "dir/root-ca.crt",
            "cacert.pem",
            "my_ca.crt",
            "ROOT.pem",
        ] {
            assert!(file_named_like_ca(name), "{name}");
        }
        for name in [
            "client.crt",
            "cart.pem",
            "local.pem",
            "fullchain.pem",
            "dir.ca/leaf.pem",
        ] {
            assert!(!file_named_like_ca(name), "{name}");
        }
    }

    #[test]
    fn json_has_a_kind_field_per_item() {
        let (_, _, ca_pem) = ca();
        let findings = inspect_bytes("ca.pem", ca_pem.as_bytes(), now()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&findings_to_json(&findings).unwrap()).unwrap();
        assert_eq!(json[0]["kind"], "certificate");
        assert_eq!(json[0]["subject"], "CN=Unit CA");
    }
}
