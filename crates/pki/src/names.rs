//! Subject names and subject alternative names, as people type them and as certificates encode them.

use std::net::IpAddr;

use rcgen::{DistinguishedName, DnType, DnValue, SanType};

use crate::PkiError;

/// A certificate subject: the common name plus the optional attributes that cfssl's `names`
/// and the `--org` / `--ou` flags fill in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectName {
    /// CN.
    pub common_name: String,
    /// C (two-letter country code).
    pub country: Vec<String>,
    /// ST.
    pub state: Vec<String>,
    /// L.
    pub locality: Vec<String>,
    /// O.
    pub organization: Vec<String>,
    /// OU.
    pub organizational_unit: Vec<String>,
}

impl SubjectName {
    /// A subject with only a common name.
    pub fn common_name(name: impl Into<String>) -> Self {
        Self {
            common_name: name.into(),
            ..Self::default()
        }
    }

    /// Encodes the name in the order cfssl and OpenSSL use (C, ST, L, O, OU, CN); C is a
    /// PrintableString as RFC 5280 requires, everything else UTF-8.
    pub fn to_distinguished_name(&self) -> Result<DistinguishedName, PkiError> {
        let mut name = DistinguishedName::new();
        for country in &self.country {
            let printable = rcgen::string::PrintableString::try_from(country.as_str())
                .ok()
                .filter(|_| country.len() == 2)
                .ok_or_else(|| PkiError::BadName {
                    field: "C",
                    value: country.clone(),
                    reason: "a country is a two-letter code like US or DE".to_owned(),
                })?;
            name.push(DnType::CountryName, DnValue::PrintableString(printable));
        }
        let fields = [
            (DnType::StateOrProvinceName, &self.state),
            (DnType::LocalityName, &self.locality),
            (DnType::OrganizationName, &self.organization),
            (DnType::OrganizationalUnitName, &self.organizational_unit),
        ];
        for (field, values) in fields {
            for value in values {
                name.push(field.clone(), DnValue::Utf8String(value.clone()));
            }
        }
        if self.common_name.trim().is_empty() {
            return Err(PkiError::BadName {
                field: "CN",
                value: self.common_name.clone(),
                reason: "the common name is empty".to_owned(),
            });
        }
        name.push(
            DnType::CommonName,
            DnValue::Utf8String(self.common_name.clone()),
        );
        Ok(name)
    }
}

/// A subject alternative name: what a TLS peer actually checks (RFC 6125) and what access
/// policies match on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// `dns:app.example.com`
    Dns(String),
    /// `ip:10.0.0.1`
    Ip(IpAddr),
    /// `uri:spiffe://example.org/service`
    Uri(String),
    /// `email:alice@example.com`
    Email(String),
}

impl SubjectAltName {
    /// Converts to rcgen's form, checking the value is plain ASCII as IA5String requires.
    pub fn to_san_type(&self) -> Result<SanType, PkiError> {
        let ia5 = |value: &str| {
            rcgen::string::Ia5String::try_from(value).map_err(|error| PkiError::BadSubjectAltName {
                value: self.to_string(),
                reason: format!("not plain ASCII ({error})"),
            })
        };
        Ok(match self {
            SubjectAltName::Dns(name) => SanType::DnsName(ia5(name)?),
            SubjectAltName::Ip(address) => SanType::IpAddress(*address),
            SubjectAltName::Uri(uri) => SanType::URI(ia5(uri)?),
            SubjectAltName::Email(address) => SanType::Rfc822Name(ia5(address)?),
        })
    }

    /// The name a server certificate gets when none is given: its common name, as an IP address
    /// SAN when it is one, else as a DNS SAN.
    pub fn from_common_name(common_name: &str) -> SubjectAltName {
        match common_name.parse::<IpAddr>() {
            Ok(address) => SubjectAltName::Ip(address),
            Err(_) => SubjectAltName::Dns(common_name.to_owned()),
        }
    }

    /// Reads a cfssl `hosts` entry, which has no prefix: an IP address, an email address, a URI
    /// or else a DNS name.
    pub fn from_cfssl_host(host: &str) -> Result<SubjectAltName, PkiError> {
        if let Ok(address) = host.parse::<IpAddr>() {
            Ok(SubjectAltName::Ip(address))
        } else if host.contains("://") {
            format!("uri:{host}").parse()
        } else if host.contains('@') {
            format!("email:{host}").parse()
        } else {
            format!("dns:{host}").parse()
        }
    }
}

impl std::fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectAltName::Dns(name) => write!(f, "dns:{name}"),
            SubjectAltName::Ip(address) => write!(f, "ip:{address}"),
            SubjectAltName::Uri(uri) => write!(f, "uri:{uri}"),
            SubjectAltName::Email(address) => write!(f, "email:{address}"),
        }
    }
}

impl std::str::FromStr for SubjectAltName {
    type Err = PkiError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| PkiError::BadSubjectAltName {
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| bad("missing the kind prefix"))?;
        if value.is_empty() {
            return Err(bad("the value after the prefix is empty"));
        }
        if !value.is_ascii() {
            return Err(bad(
                "not plain ASCII (write internationalised names as punycode xn--...)",
            ));
        }
        match kind.to_ascii_lowercase().as_str() {
            "dns" => {
                let valid = value.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
                });
                if !valid || value.len() > 253 {
                    return Err(bad("not a DNS name"));
                }
                Ok(SubjectAltName::Dns(value.to_ascii_lowercase()))
            }
            "ip" => value
                .parse::<IpAddr>()
                .map(SubjectAltName::Ip)
                .map_err(|_| bad("not an IPv4 or IPv6 address")),
            "uri" => {
                if !value.contains(':') {
                    return Err(bad(
                        "a URI needs a scheme, like spiffe://... or https://...",
                    ));
                }
                Ok(SubjectAltName::Uri(value.to_owned()))
            }
            "email" => {
                let (local, domain) = value
                    .split_once('@')
                    .ok_or_else(|| bad("an email address needs an @"))?;
                if local.is_empty() || domain.is_empty() {
                    return Err(bad("an email address needs text on both sides of the @"));
                }
                Ok(SubjectAltName::Email(value.to_owned()))
            }
            _ => Err(bad("unknown kind prefix")),
        }
    }
}
