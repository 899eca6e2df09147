//! The join token: one printable string that tells an agent where the edge is, how to pin it, and proves it was invited.
//!
//! ```text
//! moat-join-1.<base64url, no padding, of JSON>
//! {"edge":"edge.example.com:4443","ca_sha256":"<64 hex>","id":"<16 hex>",
//!  "secret":"<base64url of 32 random bytes>","expires":1767225600,"grant":["*.a.example.com"]}
//! ```
//!
//! The JSON has exactly these fields (unknown ones are refused). The edge keeps only the
//! SHA-256 of the secret (see `tokens.rs`); the agent pins the edge's agent CA by `ca_sha256`.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_pki::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::grants::HostnameGlob;

/// What every join token starts with, before its version.
pub const TOKEN_PREFIX: &str = "moat-join-";
/// The token format this moat writes and reads.
pub const TOKEN_VERSION: u32 = 1;
/// The fix every refusal of a token ends with.
const NEW_TOKEN: &str = "ask the edge's operator for a new one";

/// A token's id: 16 lower-case hex digits, random. It names the token in the edge's store and
/// logs; it is not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

impl TokenId {
    /// A new random id.
    pub fn generate() -> Result<TokenId, TokenError> {
        Ok(TokenId(hex::encode(random::<8>()?)))
    }

    /// Reads an id (16 hex digits).
    pub fn parse(text: &str) -> Option<TokenId> {
        (text.len() == 16 && text.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .then(|| TokenId(text.to_ascii_lowercase()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token's 32 random bytes. Never printed: its `Debug` is redacted and it has no `Display`.
#[derive(Clone)]
pub struct TokenSecret([u8; 32]);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(redacted)")
    }
}

impl TokenSecret {
    /// A new random secret.
    pub fn generate() -> Result<TokenSecret, TokenError> {
        Ok(TokenSecret(random::<32>()?))
    }

    /// The secret's bytes, e.g. from a test that tampers with them.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenSecret {
        TokenSecret(bytes)
    }

    /// SHA-256 of the secret, lower-case hex: all the edge stores of it.
    pub fn sha256_hex(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &self.0,
        ))
    }

    /// True when this secret's SHA-256 is `stored_sha256_hex`, compared in constant time.
    pub fn matches(&self, stored_sha256_hex: &str) -> bool {
        verify_slices_are_equal(
            self.sha256_hex().as_bytes(),
            stored_sha256_hex.to_ascii_lowercase().as_bytes(),
        )
        .is_ok()
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

/// A parsed join token. Its `Debug` hides the secret.
#[derive(Debug, Clone)]
pub struct JoinToken {
    /// The edge's agent address, `host:port`.
    pub edge: String,
    /// SHA-256 of the edge's agent CA certificate: the agent trusts the agent listener only
    /// under that CA (no trust on first use).
    pub ca_fingerprint: Fingerprint,
    /// The token's id.
    pub id: TokenId,
    /// The one-time secret.
    pub secret: TokenSecret,
    /// When it stops working (Unix seconds).
    pub expires_at: u64,
    /// What the joining agent may publish.
    pub grant: Vec<HostnameGlob>,
}

/// The token's JSON, exactly.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    edge: String,
    ca_sha256: String,
    id: String,
    secret: String,
    expires: u64,
    grant: Vec<String>,
}

/// A token presented after its expiry: the agent learns it from the token's text, the edge from
/// its own record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("join token {id} expired at {expired_at} (Unix time; it is now {now}); {NEW_TOKEN}")]
pub struct TokenExpired {
    /// The token's id.
    pub id: String,
    /// When it expired (Unix seconds).
    pub expired_at: u64,
    /// When it was presented (Unix seconds).
    pub now: u64,
}

/// Why a token's text was refused. No message repeats the token, which holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text does not start with `moat-join-`.
    #[error(
        "not a moat join token (it should start with \"{TOKEN_PREFIX}1.\"); copy the whole token the edge printed, or {NEW_TOKEN}"
    )]
    NotAJoinToken,
    /// A version this moat does not read.
    #[error(
        "join token version {version:?} is not supported (this moat reads version {TOKEN_VERSION}); use a moat of the edge's version, or {NEW_TOKEN}"
    )]
    UnsupportedVersion {
        /// The version as written.
        version: String,
    },
    /// The part after the version is not base64url.
    #[error(
        "the join token is damaged (not base64url: {reason}); copy it again without line breaks or spaces, or {NEW_TOKEN}"
    )]
    BadEncoding {
        /// The decoder's explanation.
        reason: String,
    },
    /// The JSON inside lacks, adds or mistypes a field.
    #[error("the join token's content is malformed ({reason}); {NEW_TOKEN}")]
    BadFields {
        /// The parser's explanation.
        reason: String,
    },
    /// One field holds a value out of its form.
    #[error("the join token's field {field:?} {problem}; {NEW_TOKEN}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The token expired (by the expiry it carries).
    #[error(transparent)]
    Expired(TokenExpired),
    /// The CA the edge presented is not the one the token pins.
    #[error(
        "the edge presented an agent CA with SHA-256 {presented}, but the join token pins {pinned}; this is not the edge that made the token (or its agent CA was replaced): check the edge's address, or {NEW_TOKEN}"
    )]
    PinMismatch {
        /// The fingerprint the token carries.
        pinned: String,
        /// The fingerprint of the CA the edge presented.
        presented: String,
    },
    /// The system's random generator failed.
    #[error("cannot make a join token: the system random generator failed")]
    Random,
}

impl JoinToken {
    /// The printable token.
    pub fn to_text(&self) -> String {
        let wire = Wire {
            edge: self.edge.clone(),
            ca_sha256: self.ca_fingerprint.to_string(),
            id: self.id.to_string(),
            secret: self.secret.encode(),
            expires: self.expires_at,
            grant: self.grant.iter().map(ToString::to_string).collect(),
        };
        // Encoding a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        format!(
            "{TOKEN_PREFIX}{TOKEN_VERSION}.{}",
            URL_SAFE_NO_PAD.encode(json)
        )
    }

    /// Checks that `ca_certificate_der`, the CA the edge presents (on the agent listener, and with
    /// the signed certificate), is the one this token pins: what `moat agent join` trusts the
    /// edge by, instead of trusting whatever it is shown first.
    pub fn check_pin(&self, ca_certificate_der: &[u8]) -> Result<(), TokenError> {
        let presented = Fingerprint::of_der(ca_certificate_der);
        if presented == self.ca_fingerprint {
            Ok(())
        } else {
            Err(TokenError::PinMismatch {
                pinned: self.ca_fingerprint.to_string(),
                presented: presented.to_string(),
            })
        }
    }

    /// Reads a token strictly and refuses one that expired before `now` (Unix seconds).
    /// Whitespace around it (from copying) is ignored.
    pub fn parse(text: &str, now: u64) -> Result<JoinToken, TokenError> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::NotAJoinToken)?;
        let (version, body) = rest.split_once('.').ok_or(TokenError::NotAJoinToken)?;
        if version != TOKEN_VERSION.to_string() {
            let shown: String = version.chars().take(8).collect();
            return Err(TokenError::UnsupportedVersion { version: shown });
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|error| TokenError::BadEncoding {
                reason: error.to_string(),
            })?;
        let wire: Wire = serde_json::from_slice(&json).map_err(|error| TokenError::BadFields {
            reason: error.to_string(),
        })?;
        let bad = |field, problem: &str| TokenError::BadField {
            field,
            problem: problem.to_owned(),
        };
        check_edge_address(&wire.edge).map_err(|problem| bad("edge", problem))?;
        let ca_fingerprint = Fingerprint::parse(&wire.ca_sha256)
            .filter(|_| wire.ca_sha256.len() == 64)
            .ok_or_else(|| bad("ca_sha256", "is not 64 hex digits (a SHA-256 fingerprint)"))?;
        let id = TokenId::parse(&wire.id).ok_or_else(|| bad("id", "is not 16 hex digits"))?;
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&wire.secret)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("secret", "is not 32 bytes in base64url"))?;
        let grant = wire
            .grant
            .iter()
            .map(|glob| HostnameGlob::parse(glob))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TokenError::BadField {
                field: "grant",
                problem: format!("holds {error}"),
            })?;
        if wire.expires <= now {
            return Err(TokenError::Expired(TokenExpired {
                id: id.to_string(),
                expired_at: wire.expires,
                now,
            }));
        }
        Ok(JoinToken {
            edge: wire.edge,
            ca_fingerprint,
            id,
            secret: TokenSecret(secret),
            expires_at: wire.expires,
            grant,
        })
    }
}

/// Checks `host:port` (an IPv6 host in brackets).
pub fn check_edge_address(address: &str) -> Result<(), &'static str> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or("is not host:port (the port is missing)")?;
    match port.parse::<u16>() {
        Ok(port) if port > 0 => {}
        _ => return Err("has no port number between 1 and 65535 after the last ':'"),
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte))
    };
    if host_ok {
        Ok(())
    } else {
        Err("has no valid host before the port (a DNS name, an IPv4 address or [IPv6])")
    }
}

/// A new id for a record the edge makes in the store: `prefix` (e.g. `ag` for a grant), `_`,
/// 16 random hex digits.
pub fn record_id(prefix: &str) -> Result<String, TokenError> {
    Ok(format!("{prefix}_{}", hex::encode(random::<8>()?)))
}

fn random<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TokenError::Random)?;
    Ok(bytes)
}
