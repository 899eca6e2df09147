//! What callers ask a CA for (a new CA, a leaf, a CSR signing, a CRL) and what revoking returns.

use time::Duration;

use crate::keys::KeyType;
use crate::ledger::LedgerEntry;
use crate::names::{SubjectAltName, SubjectName};
use crate::profile::Profile;
use crate::serial::Serial;

#[cfg(doc)]
use super::authority::CertificateAuthority;
#[cfg(doc)]
use crate::ledger;

/// What kind of CA to make with [`CertificateAuthority::init`].
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The CA's subject.
    pub subject: SubjectName,
    /// Its key algorithm.
    pub key_type: KeyType,
    /// Lifetime in days.
    pub validity_days: u32,
    /// Encrypts `ca.key` as PKCS#8 (PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256) when set.
    pub passphrase: Option<String>,
    /// basicConstraints pathLenConstraint: how many CA levels may follow below. `None` means
    /// unconstrained for a root and 0 (issues only leaves) for an intermediate.
    pub path_len: Option<u8>,
    /// Replace an existing CA in the directory.
    pub overwrite: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            subject: SubjectName::common_name("moat CA"),
            key_type: KeyType::default(),
            validity_days: 3650,
            passphrase: None,
            path_len: None,
            overwrite: false,
        }
    }
}

/// What leaf certificate to make with [`CertificateAuthority::issue`].
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Its subject.
    pub subject: SubjectName,
    /// Its SANs; a server profile with none gets the common name as one.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Usages and default lifetime.
    pub profile: Profile,
    /// Lifetime; overrides the profile's.
    pub validity: Option<Duration>,
    /// Key algorithm of the new key.
    pub key_type: KeyType,
}

impl LeafRequest {
    /// A client certificate for `common_name` with the client profile's defaults.
    pub fn client(common_name: &str) -> LeafRequest {
        LeafRequest {
            subject: SubjectName::common_name(common_name),
            subject_alt_names: Vec::new(),
            profile: Profile::client(),
            validity: None,
            key_type: KeyType::default(),
        }
    }

    /// A server certificate for `domain` (also its DNS SAN) with the server profile's defaults.
    pub fn server(domain: &str) -> LeafRequest {
        LeafRequest {
            subject: SubjectName::common_name(domain),
            subject_alt_names: vec![SubjectAltName::from_common_name(domain)],
            profile: Profile::server(),
            validity: None,
            key_type: KeyType::default(),
        }
    }
}

/// How to sign a CSR with [`CertificateAuthority::sign_csr`].
#[derive(Debug, Clone)]
pub struct CsrSigning {
    /// Usages and default lifetime (the CSR's own usage requests are not honoured).
    pub profile: Profile,
    /// Lifetime; overrides the profile's.
    pub validity: Option<Duration>,
}

/// Revocations and CRLs to make with [`CertificateAuthority::crl`].
#[derive(Debug, Clone)]
pub struct CrlOptions {
    /// Time until nextUpdate.
    pub validity: Duration,
    /// More serials to list (e.g. from [`ledger::read_serials_file`]), revoked
    /// with reason unspecified as of now.
    pub extra_serials: Vec<Serial>,
}

/// A signed certificate revocation list.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    /// PEM (`X509 CRL`).
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// Its CRL number.
    pub number: u64,
    /// How many serials it lists.
    pub revoked_count: usize,
}

/// The result of [`CertificateAuthority::revoke`].
#[derive(Debug, Clone)]
pub struct RevokeOutcome {
    /// The ledger entry after the call.
    pub entry: LedgerEntry,
    /// False when the certificate was already revoked (the first revocation is kept).
    pub newly_revoked: bool,
}
