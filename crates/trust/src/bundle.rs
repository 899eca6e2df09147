//! CA bundles: the PEM files of CAs whose clients an endpoint lets in, checked to really be CAs.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::x509::{rfc4514, split_spki, verify_signed};
use crate::{ClientIdentity, TrustError};

/// One trusted CA certificate and where it came from, so errors and logs can point at the file.
#[derive(Debug, Clone)]
pub struct CaCertificate {
    der: CertificateDer<'static>,
    subject: String,
    subject_der: Vec<u8>,
    spki_der: Vec<u8>,
    key_usage_allows_crl_sign: bool,
    source: PathBuf,
    position: usize,
    not_after: i64,
}

impl CaCertificate {
    /// The certificate's DER, e.g. for a rustls root store or for `openssl`-compatible output.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The subject as an RFC 4514 string, e.g. `CN=Example CA,O=Example`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's DER encoding, as it appears in the issuer field of what this CA signs (and
    /// as TLS CertificateRequest messages name acceptable CAs).
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The file the certificate was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The certificate's 1-based position in its file.
    pub fn position(&self) -> usize {
        self.position
    }

    /// End of validity, seconds since the Unix epoch, so operators can be warned before it passes.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The DER SubjectPublicKeyInfo, for verifying what this CA signed.
    pub(crate) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// False when a keyUsage extension is present without cRLSign (RFC 5280 4.2.1.3).
    pub(crate) fn may_sign_crls(&self) -> bool {
        self.key_usage_allows_crl_sign
    }
}

/// The CAs an endpoint trusts for client certificates, read from one or more PEM files.
///
/// Every certificate must be a CA (basicConstraints cA=true, RFC 5280 4.2.1.9): a leaf
/// certificate pasted into a bundle by mistake would otherwise silently trust nothing, or worse.
#[derive(Debug, Clone, Default)]
pub struct CaBundle {
    cas: Vec<CaCertificate>,
}

impl CaBundle {
    /// Reads every certificate of every file (PEM with one or several `CERTIFICATE` blocks, or a
    /// single DER certificate) and checks that each one is a CA. A certificate that appears twice
    /// (in one file or across files) is kept once.
    pub fn from_files(paths: &[PathBuf]) -> Result<CaBundle, TrustError> {
        let mut bundle = CaBundle::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
                path: path.clone(),
                source,
            })?;
            bundle.add_file_bytes(path, &bytes)?;
        }
        Ok(bundle)
    }

    /// Reads the certificates of one file already in memory, as [`CaBundle::from_files`] reads
    /// each file; `path` names it in errors. The fuzz target `ca_bundle` drives this.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<CaBundle, TrustError> {
        let mut bundle = CaBundle::default();
        bundle.add_file_bytes(path, bytes)?;
        Ok(bundle)
    }

    fn add_file_bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
        let ders = certificates_in(path, bytes)?;
        if ders.is_empty() {
            return Err(TrustError::NoCertificate {
                path: path.to_owned(),
            });
        }
        for (index, der) in ders.into_iter().enumerate() {
            let ca = read_ca(path, index + 1, der)?;
            if !self.cas.iter().any(|known| known.der == ca.der) {
                self.cas.push(ca);
            }
        }
        Ok(())
    }

    /// How many distinct CAs the bundle holds.
    pub fn len(&self) -> usize {
        self.cas.len()
    }

    /// True when no file has been read; a verifier cannot be built from an empty bundle.
    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// The CAs in file order.
    pub fn iter(&self) -> impl Iterator<Item = &CaCertificate> {
        self.cas.iter()
    }

    /// The configured CA that signed a certificate of `identity`'s chain: the leaf's issuer
    /// when it is configured, else the issuer of the first intermediate signed by one. Policies
    /// use it for `issuer = "cas.pem"` and `moat verify` prints it. Signatures are checked, so a
    /// CA that merely shares the issuer's name is not taken for it; `None` for a chain the
    /// verifier would refuse as unknown.
    pub fn issuer_of(&self, identity: &ClientIdentity) -> Option<&CaCertificate> {
        let algorithms = crate::provider().signature_verification_algorithms;
        for der in std::iter::once(&identity.certificate).chain(identity.chain.iter()) {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                continue;
            };
            let issuer = cert.issuer().as_raw();
            let signer = self.cas.iter().find(|ca| {
                ca.subject_der == issuer
                    && split_spki(ca.spki_der())
                        .is_some_and(|key| verify_signed(der.as_ref(), &key, &algorithms).is_ok())
            });
            if signer.is_some() {
                return signer;
            }
        }
        None
    }

    /// The CAs whose subject is exactly `subject_der` (several CAs may share a name across key rollovers).
    pub(crate) fn with_subject<'a>(
        &'a self,
        subject_der: &'a [u8],
    ) -> impl Iterator<Item = &'a CaCertificate> + 'a {
        self.cas
            .iter()
            .filter(move |ca| ca.subject_der == subject_der)
    }
}

/// The DER certificates in a file: PEM `CERTIFICATE` blocks, or the whole file when it is DER.
fn certificates_in(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    if looks_like_der(bytes) {
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TrustError::Pem {
            path: path.to_owned(),
            expected: "CERTIFICATE",
            detail: error.to_string(),
        })
}

/// DER files start with a SEQUENCE tag; PEM files with text.
pub(crate) fn looks_like_der(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30)
}

fn read_ca(
    path: &Path,
    position: usize,
    der: CertificateDer<'static>,
) -> Result<CaCertificate, TrustError> {
    let bad = |detail: String| TrustError::BadCertificate {
        path: path.to_owned(),
        position,
        detail,
    };
    let (rest, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".to_owned()));
    }
    let subject = rfc4514(cert.subject());
    let basic_constraints = cert
        .basic_constraints()
        .map_err(|e| bad(format!("invalid extensions: {e}")))?;
    let why_not_ca = match basic_constraints {
        Some(bc) if bc.value.ca => None,
        None if cert.version().0 < 2 => {
            Some("X.509 v1 certificate without basicConstraints, so cA=false")
        }
        // An absent extension means cA=false (RFC 5280 4.2.1.9), so say it the same way.
        Some(_) | None => Some("basicConstraints cA=false"),
    };
    if let Some(why) = why_not_ca {
        return Err(TrustError::NotACa {
            path: path.to_owned(),
            position,
            subject,
            why,
        });
    }
    let key_usage_allows_crl_sign = match cert.key_usage() {
        Ok(Some(usage)) => usage.value.crl_sign(),
        Ok(None) => true,
        Err(e) => return Err(bad(format!("invalid keyUsage: {e}"))),
    };
    Ok(CaCertificate {
        subject,
        subject_der: cert.subject().as_raw().to_vec(),
        spki_der: cert.public_key().raw.to_vec(),
        key_usage_allows_crl_sign,
        source: path.to_owned(),
        position,
        not_after: cert.validity().not_after.timestamp(),
        der,
    })
}
