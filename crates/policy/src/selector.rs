//! Selectors: the single facts about a client (a certificate field, its address) that rules test.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use moat_trust::{CaCertificate, ClientIdentity, SubjectAltName};

use crate::pattern::TextPattern;
use crate::request::{Client, Request};

/// A selector's value as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorValue {
    /// A string, e.g. `"ops-*"`.
    Text(String),
    /// A boolean, e.g. `valid_certificate = true`.
    Bool(bool),
}

/// Why a selector could not be read; the message says how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The name is not one of [`Selector::NAMES`].
    #[error("unknown selector {name:?}; use one of {}", Selector::NAMES.join(", "))]
    Unknown {
        /// The name as written.
        name: String,
    },
    /// The value has the wrong type or form.
    #[error("{name}: {problem}")]
    BadValue {
        /// The selector's name.
        name: &'static str,
        /// What is wrong and what to write.
        problem: String,
    },
}

/// One test on a request and its client certificate, as Cloudflare Access's selectors have it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Selector {
    /// The subject's common name, exact or glob (`ops-*`).
    CommonName(TextPattern),
    /// Any certificate the endpoint's CAs verified.
    ValidCertificate,
    /// Any DNS subject alternative name (glob, no case).
    SanDns(TextPattern),
    /// Any URI subject alternative name, e.g. a SPIFFE ID (glob).
    SanUri(TextPattern),
    /// Any email subject alternative name (glob, no case).
    SanEmail(TextPattern),
    /// Any organization (O) of the subject (glob).
    Organization(TextPattern),
    /// Any organizational unit (OU) of the subject (glob).
    OrganizationalUnit(TextPattern),
    /// The issuing CA: its subject (RFC 4514, as `moat pki inspect` prints it) or the name of
    /// the CA file the certificate chains to (`clients-ca.pem`).
    Issuer(String),
    /// The serial number, hex (colons and leading zeros ignored).
    Serial(String),
    /// The SHA-256 fingerprint of the certificate, hex (colons ignored).
    FingerprintSha256(String),
    /// The client's address lies in this network (`10.0.0.0/8`, or one address).
    SourceIp(IpNet),
}

impl Selector {
    /// Every selector name, as written in the configuration.
    pub const NAMES: [&'static str; 11] = [
        "common_name",
        "valid_certificate",
        "san_dns",
        "san_uri",
        "san_email",
        "organization",
        "organizational_unit",
        "issuer",
        "serial",
        "fingerprint_sha256",
        "source_ip",
    ];

    /// Reads the selector `name = value`.
    pub fn parse(name: &str, value: SelectorValue) -> Result<Selector, SelectorError> {
        let Some(&known) = Self::NAMES.iter().find(|known| **known == name) else {
            return Err(SelectorError::Unknown {
                name: name.to_owned(),
            });
        };
        let bad = |problem: &str| SelectorError::BadValue {
            name: known,
            problem: problem.to_owned(),
        };
        if known == "valid_certificate" {
            return match value {
                SelectorValue::Bool(true) => Ok(Selector::ValidCertificate),
                SelectorValue::Bool(false) => Err(bad(
                    "only `true` is meaningful; to let clients without a certificate in, use a \
                     rule with action = \"bypass\"",
                )),
                SelectorValue::Text(_) => Err(bad("write valid_certificate = true (a boolean)")),
            };
        }
        let SelectorValue::Text(text) = value else {
            return Err(bad("expects a string, e.g. \"...\""));
        };
        if text.is_empty() {
            return Err(bad("is empty; give the value to match"));
        }
        Ok(match known {
            "common_name" => Selector::CommonName(TextPattern::new(&text)),
            "san_dns" => Selector::SanDns(TextPattern::case_insensitive(&text)),
            "san_uri" => Selector::SanUri(TextPattern::new(&text)),
            "san_email" => Selector::SanEmail(TextPattern::case_insensitive(&text)),
            "organization" => Selector::Organization(TextPattern::new(&text)),
            "organizational_unit" => Selector::OrganizationalUnit(TextPattern::new(&text)),
            "issuer" => Selector::Issuer(text),
            "serial" => Selector::Serial(
                normalize_serial(&text)
                    .ok_or_else(|| bad("expects hex digits, e.g. \"0a:1b:2c\" or \"0A1B2C\""))?,
            ),
            "fingerprint_sha256" => Selector::FingerprintSha256(
                normalize_fingerprint(&text)
                    .ok_or_else(|| bad("expects 64 hex digits (colons allowed), as `openssl x509 -fingerprint -sha256` prints"))?,
            ),
            "source_ip" => Selector::SourceIp(
                parse_network(&text)
                    .ok_or_else(|| bad("expects an address or a CIDR network, e.g. \"10.0.0.0/8\""))?,
            ),
            _ => {
                return Err(SelectorError::Unknown {
                    name: known.to_owned(),
                });
            }
        })
    }

    /// False only for selectors that test the connection rather than the certificate.
    pub fn needs_certificate(&self) -> bool {
        !matches!(self, Selector::SourceIp(_))
    }

    /// True when the request and its client (if any) satisfy this selector.
    pub(crate) fn matches(&self, request: &Request<'_>, client: Option<&Client<'_>>) -> bool {
        if let Selector::SourceIp(network) = self {
            return network.contains(&canonical(request.source_ip));
        }
        let Some(client) = client else {
            return false;
        };
        self.matches_certificate(client.identity, client.ca)
    }

    /// True when the verified certificate `identity` (chaining to `ca`, when known) satisfies
    /// this selector; false for `source_ip`, which tests the connection. For callers that judge
    /// a certificate outside a request, such as the edge choosing an agent's grants.
    pub fn matches_certificate(
        &self,
        identity: &ClientIdentity,
        ca: Option<&CaCertificate>,
    ) -> bool {
        let sans = identity.sans.iter();
        match self {
            Selector::CommonName(pattern) => identity
                .common_name
                .as_deref()
                .is_some_and(|cn| pattern.matches(cn)),
            Selector::ValidCertificate => true,
            Selector::SanDns(pattern) => sans
                .filter_map(|san| match san {
                    SubjectAltName::Dns(name) => Some(name),
                    _ => None,
                })
                .any(|name| pattern.matches(name)),
            Selector::SanUri(pattern) => sans
                .filter_map(|san| match san {
                    SubjectAltName::Uri(uri) => Some(uri),
                    _ => None,
                })
                .any(|uri| pattern.matches(uri)),
            Selector::SanEmail(pattern) => sans
                .filter_map(|san| match san {
                    SubjectAltName::Email(email) => Some(email),
                    _ => None,
                })
                .any(|email| pattern.matches(email)),
            Selector::Organization(pattern) => {
                identity.organizations.iter().any(|o| pattern.matches(o))
            }
            Selector::OrganizationalUnit(pattern) => identity
                .organizational_units
                .iter()
                .any(|ou| pattern.matches(ou)),
            Selector::Issuer(issuer) => {
                identity.issuer == *issuer
                    || ca.is_some_and(|ca| {
                        ca.subject() == issuer
                            || ca
                                .source()
                                .file_name()
                                .is_some_and(|name| name.to_string_lossy() == issuer.as_str())
                    })
            }
            Selector::Serial(serial) => {
                normalize_serial(&identity.serial_hex).as_deref() == Some(serial.as_str())
            }
            Selector::FingerprintSha256(fingerprint) => identity
                .fingerprint_sha256
                .eq_ignore_ascii_case(fingerprint),
            Selector::SourceIp(_) => false,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::CommonName(p) => write!(f, "common_name = {:?}", p.as_str()),
            Selector::ValidCertificate => write!(f, "valid_certificate = true"),
            Selector::SanDns(p) => write!(f, "san_dns = {:?}", p.as_str()),
            Selector::SanUri(p) => write!(f, "san_uri = {:?}", p.as_str()),
            Selector::SanEmail(p) => write!(f, "san_email = {:?}", p.as_str()),
            Selector::Organization(p) => write!(f, "organization = {:?}", p.as_str()),
            Selector::OrganizationalUnit(p) => write!(f, "organizational_unit = {:?}", p.as_str()),
            Selector::Issuer(issuer) => write!(f, "issuer = {issuer:?}"),
            Selector::Serial(serial) => write!(f, "serial = {serial:?}"),
            Selector::FingerprintSha256(fp) => write!(f, "fingerprint_sha256 = {fp:?}"),
            Selector::SourceIp(network) => write!(f, "source_ip = \"{network}\""),
        }
    }
}

/// A serial in one spelling (the ledger's: lowercase hex without leading zeros, `0` for zero) so
/// that a rule and a certificate compare as numbers; `None` if not hex.
fn normalize_serial(text: &str) -> Option<String> {
    moat_pki::Serial::parse(text).map(|serial| serial.to_ledger_hex())
}

/// Lowercase hex of a SHA-256 digest without separators; `None` unless 64 hex digits.
fn normalize_fingerprint(text: &str) -> Option<String> {
    moat_pki::Fingerprint::parse(text).map(|fingerprint| fingerprint.to_string())
}

/// A CIDR network, or a single address as a /32 or /128.
fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|network| match network {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len().saturating_sub(96))
                    .unwrap_or(IpNet::V6(v6)),
                None => IpNet::V6(v6),
            },
            v4 => v4,
        })
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 client) as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_without_separators_case_or_leading_zeros() {
        assert_eq!(normalize_serial("00:0A:1b").as_deref(), Some("a1b"));
        assert_eq!(normalize_serial("0x0a1B").as_deref(), Some("a1b"));
        assert_eq!(normalize_serial("zz"), None);
    }

    #[test]
    fn unknown_selector_lists_the_known_ones() {
        let error = Selector::parse("cn", SelectorValue::Text("x".into())).unwrap_err();
        assert!(error.to_string().contains("common_name"), "{error}");
    }

    #[test]
    fn source_ip_takes_a_network_or_an_address() {
        assert!(parse_network("10.0.0.0/8").is_some());
        assert!(parse_network("127.0.0.1").is_some());
        assert!(parse_network("10.0.0.0/33").is_none());
    }
}
