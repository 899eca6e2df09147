//! `HostnameGlob`: a hostname an agent may publish, exact or one wildcard label — the edge's grants
//! and join tokens read them, and the admin API checks them, with these rules.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{domain_serves, valid_domain};

/// A hostname an agent may publish: an exact name (`app.example.com`) or every name one label
/// under a domain (`*.a.example.com`). Kept lower-case without a trailing dot, so that it
/// compares as DNS names do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostnameGlob(String);

/// Why a hostname glob was refused; the message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "hostname glob {glob:?} {problem}; write an exact name (app.example.com) or one wildcard label in front (*.a.example.com)"
)]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl HostnameGlob {
    /// Reads `*.a.example.com` or `app.example.com` (any case, a trailing dot ignored).
    pub fn parse(text: &str) -> Result<HostnameGlob, GlobError> {
        let bad = |problem| GlobError {
            glob: text.to_owned(),
            problem,
        };
        let normal = text.trim_end_matches('.').to_ascii_lowercase();
        let name = normal.strip_prefix("*.").unwrap_or(&normal);
        if name.is_empty() {
            return Err(bad("names no domain"));
        }
        if name.contains('*') {
            return Err(bad("has a wildcard other than one leading \"*.\""));
        }
        if !valid_domain(&normal) {
            return Err(bad(
                "is not a DNS name (at most 253 characters, labels of 1-63 letters, digits or '-', not starting or ending with '-')",
            ));
        }
        if normal.starts_with("*.") && !name.contains('.') {
            return Err(bad("covers a whole top-level domain"));
        }
        Ok(HostnameGlob(normal))
    }

    /// True when this glob covers `hostname` (any case, a trailing dot ignored): the same name,
    /// or exactly one label under a `*.` domain (`x.y.a.example.com` is not under
    /// `*.a.example.com`), as the gateway's SNI routing reads an endpoint's domain.
    pub fn covers(&self, hostname: &str) -> bool {
        domain_serves(&self.0, hostname.trim_end_matches('.'))
    }

    /// The glob, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostnameGlob {
    type Error = GlobError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        HostnameGlob::parse(&text)
    }
}

impl From<HostnameGlob> for String {
    fn from(glob: HostnameGlob) -> String {
        glob.0
    }
}

impl fmt::Display for HostnameGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
