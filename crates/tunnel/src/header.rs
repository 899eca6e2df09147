//! `StreamHeader`: what the edge tells the agent about one public connection, as `moat-tunnel-*` headers.
//!
//! The agent believes these fields only because they arrive as HTTP/2 request headers over its
//! own authenticated connection to the edge; anything a public client sends travels in the
//! stream's payload and can never become one of them.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::{CertificateDer, DnsName};

/// The endpoint (public hostname or endpoint name) the client reached.
pub const ENDPOINT: &str = "moat-tunnel-endpoint";
/// The public client's address as the edge saw it, e.g. `203.0.113.7:52114` or `[2001:db8::1]:443`.
pub const CLIENT_ADDR: &str = "moat-tunnel-client-addr";
/// The edge's address the client connected to.
pub const SERVER_ADDR: &str = "moat-tunnel-server-addr";
/// The TLS server name the client asked for; absent when it sent none.
pub const SNI: &str = "moat-tunnel-sni";
/// Where TLS ends: `edge` (the stream carries plaintext) or `agent` (the client's TLS bytes).
pub const TERMINATED_AT: &str = "moat-tunnel-terminated-at";
/// One certificate of the verified client's chain, base64 DER, leaf first; repeated in order.
/// Only when TLS ended at the edge and the client presented a certificate.
pub const CLIENT_CERT: &str = "moat-tunnel-client-cert";

/// Every name this module writes; any other `moat-tunnel-*` header is refused.
const KNOWN: [&str; 6] = [
    ENDPOINT,
    CLIENT_ADDR,
    SERVER_ADDR,
    SNI,
    TERMINATED_AT,
    CLIENT_CERT,
];

/// A chain longer than any real client sends (leaf + a few intermediates); bounds the header.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;

/// The longest endpoint name or SNI: a DNS name's 253 characters.
const MAX_NAME: usize = 253;

/// Malformed values are quoted in errors up to this many characters.
const QUOTE_LIMIT: usize = 80;

/// What the edge knows about one public connection, sent as the stream's request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// The endpoint the client reached: its public hostname or endpoint name.
    pub endpoint: String,
    /// The public client's address.
    pub client_addr: SocketAddr,
    /// The edge's address the client connected to.
    pub server_addr: SocketAddr,
    /// The TLS server name the client sent, if any.
    pub sni: Option<String>,
    /// True when the edge terminated TLS (the stream is plaintext); false when the stream
    /// carries the client's TLS bytes for the agent to terminate.
    pub terminated_at_edge: bool,
    /// The client certificate chain the edge verified, when it terminated TLS and the client
    /// presented one; the agent builds `moat_trust::ClientIdentity::from_chain` from it.
    pub client_identity: Option<ClientChain>,
}

/// A client's certificate chain as presented: the leaf first, then intermediates; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChain(Vec<CertificateDer<'static>>);

impl ClientChain {
    /// The chain `certificates`, leaf first; `None` when empty.
    pub fn new(certificates: Vec<CertificateDer<'static>>) -> Option<ClientChain> {
        (!certificates.is_empty()).then_some(ClientChain(certificates))
    }

    /// The certificates, leaf first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.0
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // Non-empty by construction (`new` refuses an empty chain).
        &self.0[0]
    }
}

/// Why a stream header cannot be encoded or decoded; each names the header field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is absent.
    #[error("stream header {field} is missing")]
    Missing {
        /// The header name.
        field: &'static str,
    },
    /// A single-valued field appears more than once.
    #[error("stream header {field} appears {count} times; it must appear once")]
    Repeated {
        /// The header name.
        field: &'static str,
        /// How many times it appeared.
        count: usize,
    },
    /// A field's value is not of its form.
    #[error("stream header {field}: {value:?} is not {expected}")]
    Malformed {
        /// The header name.
        field: &'static str,
        /// The value, lossily decoded and cut to 80 characters.
        value: String,
        /// The form the field must have.
        expected: &'static str,
    },
    /// A client certificate arrived although TLS ended at the agent, where the edge cannot
    /// have verified one.
    #[error("stream header {field} is only allowed with {TERMINATED_AT}: edge")]
    CertificateWithoutTermination {
        /// The header name.
        field: &'static str,
    },
    /// The chain is longer than [`MAX_CHAIN_CERTIFICATES`].
    #[error(
        "stream header {field} carries {count} certificates; at most {MAX_CHAIN_CERTIFICATES} are allowed"
    )]
    ChainTooLong {
        /// The header name.
        field: &'static str,
        /// How many certificates it carried.
        count: usize,
    },
    /// A `moat-tunnel-*` header this version does not know (a typo, or a newer peer that the
    /// hello's version check should have stopped).
    #[error("stream header {name} is not part of the protocol")]
    Unknown {
        /// The header name as received.
        name: String,
    },
}

impl StreamHeader {
    /// The header as `moat-tunnel-*` request headers; refuses values the decoder would refuse,
    /// so a header that encodes always decodes to itself.
    pub fn to_headers(&self) -> Result<HeaderMap, HeaderError> {
        let mut map = HeaderMap::with_capacity(KNOWN.len());
        check_endpoint(&self.endpoint)?;
        map.insert(ENDPOINT, text_value(ENDPOINT, &self.endpoint)?);
        map.insert(
            CLIENT_ADDR,
            text_value(CLIENT_ADDR, &self.client_addr.to_string())?,
        );
        map.insert(
            SERVER_ADDR,
            text_value(SERVER_ADDR, &self.server_addr.to_string())?,
        );
        if let Some(sni) = &self.sni {
            check_sni(sni)?;
            map.insert(SNI, text_value(SNI, sni)?);
        }
        let terminated_at = if self.terminated_at_edge {
            "edge"
        } else {
            "agent"
        };
        map.insert(TERMINATED_AT, HeaderValue::from_static(terminated_at));
        if let Some(chain) = &self.client_identity {
            if !self.terminated_at_edge {
                return Err(HeaderError::CertificateWithoutTermination { field: CLIENT_CERT });
            }
            check_chain_length(chain.0.len())?;
            for certificate in chain.certificates() {
                map.append(
                    CLIENT_CERT,
                    text_value(CLIENT_CERT, &BASE64.encode(certificate))?,
                );
            }
        }
        Ok(map)
    }

    /// Reads the header from a stream's request headers, strictly: every required field once,
    /// every value of its form, no unknown `moat-tunnel-*` name. Other headers are ignored.
    pub fn from_headers(map: &HeaderMap) -> Result<StreamHeader, HeaderError> {
        if let Some(name) = map
            .keys()
            .map(HeaderName::as_str)
            .find(|name| name.starts_with("moat-tunnel-") && !KNOWN.contains(name))
        {
            return Err(HeaderError::Unknown {
                name: name.to_owned(),
            });
        }
        let endpoint = required(map, ENDPOINT)?;
        check_endpoint(endpoint)?;
        let client_addr = address(map, CLIENT_ADDR)?;
        let server_addr = address(map, SERVER_ADDR)?;
        let sni = match single(map, SNI)? {
            Some(sni) => Some(check_sni(sni)?.to_owned()),
            None => None,
        };
        let terminated_at_edge = match required(map, TERMINATED_AT)? {
            "edge" => true,
            "agent" => false,
            other => return Err(malformed(TERMINATED_AT, other, "`edge` or `agent`")),
        };
        let certificates = map
            .get_all(CLIENT_CERT)
            .iter()
            .map(|value| {
                let text = value
                    .to_str()
                    .map_err(|_| malformed_bytes(CLIENT_CERT, value, "base64 DER"))?;
                BASE64
                    .decode(text)
                    .map(CertificateDer::from)
                    .map_err(|_| malformed(CLIENT_CERT, text, "base64 DER"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_chain_length(certificates.len())?;
        let client_identity = ClientChain::new(certificates);
        if client_identity.is_some() && !terminated_at_edge {
            return Err(HeaderError::CertificateWithoutTermination { field: CLIENT_CERT });
        }
        Ok(StreamHeader {
            endpoint: endpoint.to_owned(),
            client_addr,
            server_addr,
            sni,
            terminated_at_edge,
            client_identity,
        })
    }
}

/// The field's one value, if present; text only (header values are visible ASCII here).
fn single<'a>(map: &'a HeaderMap, field: &'static str) -> Result<Option<&'a str>, HeaderError> {
    let mut values = map.get_all(field).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let extra = values.count();
    if extra > 0 {
        return Err(HeaderError::Repeated {
            field,
            count: extra + 1,
        });
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| malformed_bytes(field, value, "visible ASCII"))
}

fn required<'a>(map: &'a HeaderMap, field: &'static str) -> Result<&'a str, HeaderError> {
    single(map, field)?.ok_or(HeaderError::Missing { field })
}

fn address(map: &HeaderMap, field: &'static str) -> Result<SocketAddr, HeaderError> {
    let text = required(map, field)?;
    text.parse().map_err(|_| {
        malformed(
            field,
            text,
            "an address and port such as 192.0.2.1:443 or [2001:db8::1]:443",
        )
    })
}

/// An endpoint name: 1 to 253 characters of letters, digits, `.`, `-`, `_`, `*` and `:`
/// (hostnames, wildcard names, `host:port` names of TCP endpoints).
fn check_endpoint(name: &str) -> Result<(), HeaderError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | ':');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(allowed) {
        return Err(malformed(
            ENDPOINT,
            name,
            "an endpoint name (1 to 253 letters, digits, '.', '-', '_', '*', ':')",
        ));
    }
    Ok(())
}

/// A server name as TLS carries it: a DNS name, never an IP address.
fn check_sni(sni: &str) -> Result<&str, HeaderError> {
    match DnsName::try_from(sni) {
        Ok(_) if sni.len() <= MAX_NAME => Ok(sni),
        _ => Err(malformed(SNI, sni, "a DNS name")),
    }
}

fn check_chain_length(count: usize) -> Result<(), HeaderError> {
    if count > MAX_CHAIN_CERTIFICATES {
        return Err(HeaderError::ChainTooLong {
            field: CLIENT_CERT,
            count,
        });
    }
    Ok(())
}

fn text_value(field: &'static str, text: &str) -> Result<HeaderValue, HeaderError> {
    HeaderValue::from_str(text).map_err(|_| malformed(field, text, "visible ASCII"))
}

fn malformed(field: &'static str, value: &str, expected: &'static str) -> HeaderError {
    HeaderError::Malformed {
        field,
        value: value.chars().take(QUOTE_LIMIT).collect(),
        expected,
    }
}

fn malformed_bytes(
    field: &'static str,
    value: &HeaderValue,
    expected: &'static str,
) -> HeaderError {
    malformed(field, &String::from_utf8_lossy(value.as_bytes()), expected)
}
