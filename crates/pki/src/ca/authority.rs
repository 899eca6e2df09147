//! The CA itself: its certificate, key and directory, and what callers may read of them.

use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::PkiError;

/// The CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key inside a CA directory (mode 0600, encrypted PKCS#8 with a passphrase).
pub const CA_KEY_FILE: &str = "ca.key";
/// For an intermediate CA: its certificate followed by the intermediates above it (not the root),
/// which is what a leaf's chain file needs after the leaf.
pub const CHAIN_FILE: &str = "chain.crt";

/// How far back notBefore is set, so that peers whose clocks run a little slow accept a
/// certificate right after it is made.
pub(super) const BACKDATE: Duration = Duration::minutes(5);

/// A CA: its certificate and key, plus (for a CA directory made by `init-ca`) its ledger.
pub struct CertificateAuthority {
    pub(super) dir: Option<PathBuf>,
    pub(super) cert_path: PathBuf,
    pub(super) certificate_der: CertificateDer<'static>,
    pub(super) certificate_pem: String,
    pub(super) chain_pem: String,
    pub(super) key: KeyPair,
    pub(super) subject: String,
    pub(super) not_after: OffsetDateTime,
    pub(super) path_len: Option<u32>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_path", &self.cert_path)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate_der
    }

    /// The certificates a leaf's chain carries after the leaf (empty for a root CA).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA's subject as OpenSSL prints it.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The CA directory, when this CA has one (and so a ledger).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The CA as rcgen's signer of certificates and CRLs.
    pub(super) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.certificate_der, &self.key).map_err(|error| {
            PkiError::BadCertificate {
                path: self.cert_path.clone(),
                reason: format!("cannot use it as an issuer: {error}"),
            }
        })
    }
}
