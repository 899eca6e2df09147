//! The verified client's identity, read once from its certificate so that no later layer parses DER.

use std::net::IpAddr;

use moat_pki::Fingerprint;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT, Oid,
};
use x509_parser::prelude::FromDer;

use crate::TrustError;
use crate::x509::{attribute_text, rfc4514, serial_hex};

/// Who the client is, as its verified certificate says: what policies match on and what the
/// gateway forwards upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject as an RFC 4514 string, e.g. `CN=James Royal,OU=Access Admins,O=Access,C=US`.
    pub subject: String,
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
    /// The subject's organization (O) values.
    pub organizations: Vec<String>,
    /// The subject's organizational unit (OU) values.
    pub organizational_units: Vec<String>,
    /// The issuer as an RFC 4514 string.
    pub issuer: String,
    /// The serial number in lowercase hex without leading zero bytes, e.g. `0a1b2c`.
    pub serial_hex: String,
    /// SHA-256 of the certificate's DER in lowercase hex.
    pub fingerprint_sha256: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Subject alternative names, in certificate order.
    pub sans: Vec<SubjectAltName>,
    /// The X.509 version as written in the certificate (1 or 3).
    pub version: u8,
    /// The leaf certificate's DER.
    pub certificate: CertificateDer<'static>,
    /// Intermediates the client sent after the leaf, in the order sent.
    pub chain: Vec<CertificateDer<'static>>,
}

/// One subject alternative name of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(std::net::IpAddr),
    /// A URI, e.g. a SPIFFE ID.
    Uri(String),
    /// An email address (rfc822Name).
    Email(String),
}

impl ClientIdentity {
    /// Reads the identity from the chain a client presented (leaf first, as rustls's
    /// `peer_certificates()` returns it). Call it only for a chain the verifier accepted: this
    /// reads, it does not verify.
    pub fn from_chain(certs: &[CertificateDer<'_>]) -> Result<ClientIdentity, TrustError> {
        let (leaf, chain) = certs.split_first().ok_or(TrustError::EmptyChain)?;
        let malformed = |detail: String| TrustError::MalformedCertificate { detail };
        let (_, cert) =
            X509Certificate::from_der(leaf.as_ref()).map_err(|e| malformed(e.to_string()))?;

        let subject = cert.subject();
        let texts_of = |oid: &Oid<'_>| -> Vec<String> {
            subject
                .iter_by_oid(oid)
                .filter_map(|attribute| attribute_text(attribute.attr_value()))
                .collect()
        };
        // The most specific CN (the last one in DER order) names the client, as RFC 4514 puts it first.
        let common_name = texts_of(&OID_X509_COMMON_NAME).pop();

        let mut sans = Vec::new();
        let san_extension = cert
            .subject_alternative_name()
            .map_err(|e| malformed(format!("invalid subjectAltName: {e}")))?;
        if let Some(extension) = san_extension {
            for name in &extension.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => sans.push(SubjectAltName::Dns((*dns).to_owned())),
                    GeneralName::RFC822Name(email) => {
                        sans.push(SubjectAltName::Email((*email).to_owned()))
                    }
                    GeneralName::URI(uri) => sans.push(SubjectAltName::Uri((*uri).to_owned())),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.push(SubjectAltName::Ip(ip));
                        }
                    }
                    // Other name forms carry nothing policies match on today.
                    _ => {}
                }
            }
        }

        Ok(ClientIdentity {
            subject: rfc4514(subject),
            common_name,
            organizations: texts_of(&OID_X509_ORGANIZATION_NAME),
            organizational_units: texts_of(&OID_X509_ORGANIZATIONAL_UNIT),
            issuer: rfc4514(cert.issuer()),
            serial_hex: serial_hex(cert.raw_serial()),
            fingerprint_sha256: Fingerprint::of_der(leaf.as_ref()).to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sans,
            version: u8::try_from(cert.version().0 + 1).unwrap_or(u8::MAX),
            certificate: leaf.clone().into_owned(),
            chain: chain.iter().map(|der| der.clone().into_owned()).collect(),
        })
    }
}

/// An iPAddress SAN: 4 bytes for IPv4, 16 for IPv6 (RFC 5280 4.2.1.6); anything else is skipped.
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
