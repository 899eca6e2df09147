//! Certificate signing requests from other tools (`openssl req -new`, cfssl): parsed and verified.

use std::path::{Path, PathBuf};

use rcgen::{DistinguishedName, DnType, DnValue, SubjectPublicKeyInfo};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;

use crate::PkiError;
use crate::names::SubjectAltName;

/// A CSR whose self-signature has been checked: the subject, public key and requested SANs a
/// CA may copy into a certificate. Extensions other than SANs are ignored on purpose: the CA's
/// profile, not the requester, decides usages and CA status.
#[derive(Debug)]
pub struct CertificateRequest {
    pub(crate) path: PathBuf,
    pub(crate) subject: DistinguishedName,
    pub(crate) subject_text: String,
    pub(crate) public_key: SubjectPublicKeyInfo,
    pub(crate) public_key_is_rsa: bool,
    pub(crate) subject_alt_names: Vec<SubjectAltName>,
}

impl CertificateRequest {
    /// Reads and verifies a CSR file (PEM or DER).
    pub fn load(path: &Path) -> Result<CertificateRequest, PkiError> {
        let bytes = crate::files::read(path)?;
        Self::parse(path, &bytes)
    }

    /// Parses and verifies a CSR already in memory; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<CertificateRequest, PkiError> {
        let bad = |reason: String| PkiError::BadCsr {
            path: path.to_path_buf(),
            reason,
        };
        let der = if bytes.windows(11).any(|window| window == b"-----BEGIN ") {
            x509_parser::pem::Pem::iter_from_buffer(bytes)
                .filter_map(Result::ok)
                .find(|section| {
                    section.label == "CERTIFICATE REQUEST"
                        || section.label == "NEW CERTIFICATE REQUEST"
                })
                .map(|section| section.contents)
                .ok_or_else(|| bad("no CERTIFICATE REQUEST section".to_owned()))?
        } else {
            bytes.to_vec()
        };
        let (_, request) =
            X509CertificationRequest::from_der(&der).map_err(|error| bad(error.to_string()))?;
        request
            .verify_signature()
            .map_err(|_| PkiError::CsrSignatureInvalid {
                path: path.to_path_buf(),
            })?;
        let info = &request.certification_request_info;
        let subject = distinguished_name(path, &info.subject)?;
        let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|error| bad(format!("unsupported public key: {error}")))?;
        let public_key_is_rsa =
            info.subject_pki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
        let mut subject_alt_names = Vec::new();
        if let Some(extensions) = request.requested_extensions() {
            for extension in extensions {
                if let ParsedExtension::SubjectAlternativeName(names) = extension {
                    for name in &names.general_names {
                        subject_alt_names.push(san(path, name)?);
                    }
                }
            }
        }
        Ok(CertificateRequest {
            path: path.to_path_buf(),
            subject,
            subject_text: info.subject.to_string(),
            public_key,
            public_key_is_rsa,
            subject_alt_names,
        })
    }

    /// The requested subject as OpenSSL prints it.
    pub fn subject(&self) -> &str {
        &self.subject_text
    }

    /// The common name the requester asked for, when the subject has one that is text.
    pub fn common_name(&self) -> Option<String> {
        self.subject
            .get(&DnType::CommonName)
            .and_then(|value| match value {
                DnValue::Utf8String(text) => Some(text.clone()),
                DnValue::PrintableString(text) => Some(text.as_str().to_owned()),
                DnValue::Ia5String(text) => Some(text.as_str().to_owned()),
                _ => None,
            })
    }

    /// The SANs the requester asked for.
    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.subject_alt_names
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies a subject attribute by attribute, keeping each value's string type so the certificate
/// names the subject exactly as the requester wrote it.
pub(crate) fn distinguished_name(
    path: &Path,
    name: &x509_parser::x509::X509Name<'_>,
) -> Result<DistinguishedName, PkiError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut result = DistinguishedName::new();
    for attribute in name.iter_attributes() {
        let Some(oid) = attribute.attr_type().iter() else {
            continue;
        };
        let oid: Vec<u64> = oid.collect();
        let text = attribute
            .as_str()
            .map_err(|error| PkiError::BadCsr {
                path: path.to_path_buf(),
                reason: format!(
                    "subject attribute {} is not text ({error})",
                    attribute.attr_type()
                ),
            })?
            .to_owned();
        let value = match attribute.attr_value().tag() {
            Tag::PrintableString => rcgen::string::PrintableString::try_from(text.as_str())
                .map(DnValue::PrintableString)
                .unwrap_or(DnValue::Utf8String(text)),
            Tag::Ia5String => rcgen::string::Ia5String::try_from(text.as_str())
                .map(DnValue::Ia5String)
                .unwrap_or(DnValue::Utf8String(text)),
            _ => DnValue::Utf8String(text),
        };
        result.push(DnType::from_oid(&oid), value);
    }
    Ok(result)
}

fn san(path: &Path, name: &GeneralName<'_>) -> Result<SubjectAltName, PkiError> {
    Ok(match name {
        GeneralName::DNSName(dns) => SubjectAltName::Dns((*dns).to_owned()),
        GeneralName::URI(uri) => SubjectAltName::Uri((*uri).to_owned()),
        GeneralName::RFC822Name(email) => SubjectAltName::Email((*email).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                SubjectAltName::Ip(std::net::IpAddr::from(octets))
            }
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                SubjectAltName::Ip(std::net::IpAddr::from(octets))
            }
            _ => {
                return Err(PkiError::BadCsr {
                    path: path.to_path_buf(),
                    reason: "an IP address SAN is neither IPv4 nor IPv6".to_owned(),
                });
            }
        },
        other => {
            return Err(PkiError::BadCsr {
                path: path.to_path_buf(),
                reason: format!(
                    "requested subject alternative name {other} is not supported; request DNS, IP, URI or email names"
                ),
            });
        }
    })
}
