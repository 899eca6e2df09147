//! Splitting a file into the objects it holds: PEM sections by label, or one DER object by trial.

use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::error::InspectError;
use super::keys;

/// What an input object was taken for, from its PEM label or by trying DER parsers.
#[derive(Debug, Clone, Copy)]
pub(super) enum ObjectKind {
    Certificate,
    Csr,
    Crl,
    PrivateKey(keys::PrivateKeyFormat),
    PublicKey,
}

/// One PEM section or the whole DER file.
pub(super) struct RawObject {
    pub(super) label: String,
    pub(super) kind: ObjectKind,
    pub(super) der: Vec<u8>,
}

/// Splits a file into objects: every recognised PEM section, or the whole file as DER.
pub(super) fn split_objects(name: &str, bytes: &[u8]) -> Result<Vec<RawObject>, InspectError> {
    if bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return split_pem(name, bytes);
    }
    Ok(classify_der(bytes).into_iter().collect())
}

pub(super) fn split_pem(name: &str, bytes: &[u8]) -> Result<Vec<RawObject>, InspectError> {
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
pub(super) fn strip_pem_headers(bytes: &[u8]) -> (Vec<u8>, Vec<usize>) {
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
pub(super) fn classify_der(der: &[u8]) -> Option<RawObject> {
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
