//! How inspect prints names, serials, fingerprints and times, so its output matches openssl's.

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use crate::serial::{Fingerprint, Serial};

/// Names a SAN the way openssl and curl print it.
pub(super) fn describe_general_name(name: &GeneralName<'_>) -> String {
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

/// Uppercase hex of the serial's magnitude, as `openssl x509 -serial` prints it.
pub(super) fn serial_hex(raw: &[u8]) -> String {
    Serial::from_der(raw).to_openssl_hex()
}

/// The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it.
pub(super) fn sha256_fingerprint(der: &[u8]) -> String {
    Fingerprint::of_der(der).to_openssl_hex()
}

/// `CN=name` when the subject has a CN, else the whole subject: short enough for one-line messages.
pub(super) fn short_name(subject: &str) -> String {
    subject
        .split(", ")
        .find(|part| part.starts_with("CN="))
        .unwrap_or(subject)
        .to_owned()
}

/// An ASN.1 time as [`rfc3339`] spells it.
pub(super) fn asn1_rfc3339(time: ASN1Time) -> String {
    rfc3339(time.to_datetime())
}

/// `2025-01-31T12:00:00Z`, built by hand so no time formatting feature is needed.
pub(super) fn rfc3339(at: OffsetDateTime) -> String {
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
