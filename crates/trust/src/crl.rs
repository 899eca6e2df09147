//! Certificate revocation lists: read (PEM or DER), tied to the configured CA that signed them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_pki::Serial;
use rustls::RootCertStore;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use crate::bundle::{CaCertificate, looks_like_der};
use crate::x509::{SignatureFailure, rfc4514, split_spki, verify_signed};
use crate::{CaBundle, TrustError, provider};

/// One CRL, verified against the CA that issued it.
#[derive(Debug, Clone)]
pub(crate) struct LoadedCrl {
    /// The CRL as rustls-webpki will check it for X.509 v3 chains.
    pub(crate) der: CertificateRevocationListDer<'static>,
    /// The issuing CA's DER SubjectPublicKeyInfo: what ties this CRL to one CA for v1 checks.
    pub(crate) issuer_spki: Vec<u8>,
    /// The issuing CA's subject DER.
    pub(crate) issuer_subject: Vec<u8>,
    /// Revoked serial numbers, compared by value (sign padding does not count).
    pub(crate) revoked: HashSet<Serial>,
    /// The file it came from, for logs.
    pub(crate) source: PathBuf,
    /// The issuing CA, RFC 4514, for logs.
    pub(crate) issuer_name: String,
    /// nextUpdate as Unix seconds; `None` when the CRL has none (it never goes stale).
    pub(crate) next_update: Option<i64>,
    /// A version 1 CRL (what `openssl ca -gencrl` writes without a crlnumber file). rustls-webpki
    /// reads version 2 only, so moat applies these itself: [`RevocationLists::version_1_finding`].
    pub(crate) version_1: bool,
}

/// Why a version 1 CRL stops a chain that rustls-webpki accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrlFinding<'a> {
    /// The CRL of the certificate's CA is past its nextUpdate and stale CRLs are refused.
    Stale(&'a Path),
    /// The CRL of the certificate's CA lists it.
    Revoked(&'a Path),
}

/// A CRL whose nextUpdate has passed: its CA no longer vouches for it being complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleCrl {
    /// The CRL file.
    pub path: PathBuf,
    /// The issuing CA's subject (RFC 4514).
    pub issuer: String,
    /// When it should have been replaced (RFC 3339).
    pub next_update: String,
}

/// The CRLs an endpoint checks client certificates against.
///
/// Each CRL must come from a configured CA and carry that CA's valid signature; anything else is
/// refused when loading, because a CRL that silently does not apply would leave revoked clients in.
#[derive(Debug, Clone, Default)]
pub struct RevocationLists {
    crls: Vec<LoadedCrl>,
}

impl RevocationLists {
    /// Reads CRL files as `openssl ca -gencrl` (PEM, `X509 CRL` blocks) and `cfssl gencrl` (DER
    /// after base64-decoding) make them, and checks each one's issuer and signature against `cas`.
    pub fn from_files(paths: &[PathBuf], cas: &CaBundle) -> Result<Self, TrustError> {
        let mut lists = RevocationLists::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
                path: path.clone(),
                source,
            })?;
            lists.add_file_bytes(path, &bytes, cas)?;
        }
        Ok(lists)
    }

    /// Reads the CRLs of one file already in memory, as [`RevocationLists::from_files`] reads
    /// each file; `path` names it in errors. The fuzz target `crl` drives this.
    pub fn from_bytes(path: &Path, bytes: &[u8], cas: &CaBundle) -> Result<Self, TrustError> {
        let mut lists = RevocationLists::default();
        lists.add_file_bytes(path, bytes, cas)?;
        Ok(lists)
    }

    /// How many CRLs were loaded.
    pub fn len(&self) -> usize {
        self.crls.len()
    }

    /// True when no CRL was loaded, so revocation is not checked at all.
    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// The CRLs past their nextUpdate at `now`, to be logged loudly at load and periodically.
    pub fn stale(&self, now: UnixTime) -> Vec<StaleCrl> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.crls
            .iter()
            .filter_map(|crl| {
                let next_update = crl.next_update.filter(|next| *next < now)?;
                Some(StaleCrl {
                    path: crl.source.clone(),
                    issuer: crl.issuer_name.clone(),
                    next_update: ASN1Time::from_timestamp(next_update)
                        .map(|time| time.to_string())
                        .unwrap_or_else(|_| next_update.to_string()),
                })
            })
            .collect()
    }

    /// The earliest nextUpdate of the loaded CRLs (Unix seconds): when the first of them goes
    /// stale.
    pub(crate) fn earliest_next_update(&self) -> Option<i64> {
        self.crls.iter().filter_map(|crl| crl.next_update).min()
    }

    /// The file of a CRL issued by `ca` that is past its nextUpdate at `now`, if any.
    pub(crate) fn expired_for(&self, ca: &CaCertificate, now: UnixTime) -> Option<&Path> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.crls
            .iter()
            .find(|crl| {
                crl.issuer_spki == ca.spki_der()
                    && crl.issuer_subject == ca.subject_der()
                    && crl.next_update.is_some_and(|next| next < now)
            })
            .map(|crl| crl.source.as_path())
    }

    /// True when a CRL issued by `ca` lists `raw_serial`.
    pub(crate) fn is_revoked(&self, ca: &CaCertificate, raw_serial: &[u8]) -> bool {
        let serial = Serial::from_der(raw_serial);
        self.crls.iter().any(|crl| {
            crl.issuer_spki == ca.spki_der()
                && crl.issuer_subject == ca.subject_der()
                && crl.revoked.contains(&serial)
        })
    }

    /// The CRLs rustls-webpki checks X.509 v3 chains against (all but version 1 CRLs).
    pub(crate) fn for_webpki(&self) -> impl Iterator<Item = CertificateRevocationListDer<'static>> {
        self.crls
            .iter()
            .filter(|crl| !crl.version_1)
            .map(|crl| crl.der.clone())
    }

    /// What the version 1 CRLs say about a chain rustls-webpki accepted without them: for each
    /// presented certificate, the v1 CRL of the configured CA that signed it (same issuer name
    /// and the signature verifies with that CA's key) may be stale or list its serial.
    pub(crate) fn version_1_finding(
        &self,
        chain: &[&CertificateDer<'_>],
        now: UnixTime,
        refuse_expired: bool,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Option<CrlFinding<'_>> {
        if !self.crls.iter().any(|crl| crl.version_1) {
            return None;
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        for der in chain {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                continue;
            };
            let issued_by = |crl: &&LoadedCrl| {
                crl.version_1
                    && crl.issuer_subject == cert.issuer().as_raw()
                    && split_spki(&crl.issuer_spki)
                        .is_some_and(|key| verify_signed(der.as_ref(), &key, algorithms).is_ok())
            };
            for crl in self.crls.iter().filter(issued_by) {
                if refuse_expired && crl.next_update.is_some_and(|next| next < now) {
                    return Some(CrlFinding::Stale(&crl.source));
                }
                if crl.revoked.contains(&Serial::from_der(cert.raw_serial())) {
                    return Some(CrlFinding::Revoked(&crl.source));
                }
            }
        }
        None
    }

    fn add_file_bytes(
        &mut self,
        path: &Path,
        bytes: &[u8],
        cas: &CaBundle,
    ) -> Result<(), TrustError> {
        let ders = if looks_like_der(bytes) {
            vec![CertificateRevocationListDer::from(bytes.to_vec())]
        } else {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| TrustError::Pem {
                    path: path.to_owned(),
                    expected: "X509 CRL",
                    detail: error.to_string(),
                })?
        };
        if ders.is_empty() {
            return Err(TrustError::NoCrl {
                path: path.to_owned(),
            });
        }
        for (index, der) in ders.into_iter().enumerate() {
            let crl = load_one(path, index + 1, der, cas)?;
            self.crls.push(crl);
        }
        Ok(())
    }
}

fn load_one(
    path: &Path,
    position: usize,
    der: CertificateRevocationListDer<'static>,
    cas: &CaBundle,
) -> Result<LoadedCrl, TrustError> {
    let bad = |detail: String, fix: &'static str| TrustError::BadCrl {
        path: path.to_owned(),
        position,
        detail,
        fix,
    };
    const REGENERATE: &str = "regenerate it with `openssl ca -gencrl` or `cfssl gencrl`";
    let (_, parsed) = CertificateRevocationList::from_der(der.as_ref())
        .map_err(|e| bad(format!("not a DER CRL: {e}"), REGENERATE))?;
    let issuer = rfc4514(parsed.issuer());
    let issuer_der = parsed.issuer().as_raw();
    let algorithms = provider().signature_verification_algorithms;

    let mut named_issuer = false;
    let mut signer = None;
    for ca in cas.with_subject(issuer_der) {
        named_issuer = true;
        let Some(key) = split_spki(ca.spki_der()) else {
            continue;
        };
        match verify_signed(der.as_ref(), &key, &algorithms) {
            Ok(()) => {
                signer = Some(ca);
                break;
            }
            Err(SignatureFailure::Malformed) => {
                return Err(bad(
                    "its signature fields are malformed".to_owned(),
                    REGENERATE,
                ));
            }
            Err(SignatureFailure::UnsupportedAlgorithm | SignatureFailure::Invalid) => {}
        }
    }
    let Some(ca) = signer else {
        return Err(if named_issuer {
            TrustError::CrlBadSignature {
                path: path.to_owned(),
                position,
                issuer,
            }
        } else {
            TrustError::CrlUnknownIssuer {
                path: path.to_owned(),
                position,
                issuer,
            }
        });
    };
    if !ca.may_sign_crls() {
        return Err(TrustError::CrlIssuerNotCrlSigner {
            path: path.to_owned(),
            position,
            issuer,
        });
    }

    // X.509 v3 chains are checked by rustls-webpki, which is stricter than x509-parser: ask it
    // now so a CRL it cannot use fails at startup, not per client. It reads version 2 CRLs only;
    // a version 1 CRL (no extensions to misread) was verified above and is applied by moat.
    let version_1 = parsed.version().is_none();
    if !version_1 {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).map_err(|e| {
            bad(
                format!("its CA is not usable as a trust anchor: {e}"),
                REGENERATE,
            )
        })?;
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
            .with_crls([der.clone()])
            .build()
            .map_err(|e| bad(format!("{e}"), REGENERATE))?;
    }

    let revoked = parsed
        .iter_revoked_certificates()
        .map(|entry| Serial::from_der(entry.raw_serial()))
        .collect();
    Ok(LoadedCrl {
        source: path.to_owned(),
        next_update: parsed.next_update().map(|time| time.timestamp()),
        issuer_name: issuer,
        issuer_spki: ca.spki_der().to_vec(),
        issuer_subject: ca.subject_der().to_vec(),
        revoked,
        der,
        version_1,
    })
}
