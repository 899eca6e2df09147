//! Certificate authority operations (CA, leaf certificates, CSR signing, CRLs, PKCS#12), pure over files.
//!
//! The entry point is [`CertificateAuthority`]: [`CertificateAuthority::init`] makes a CA
//! directory (`ca.crt`, `ca.key`, `ledger.json`), [`CertificateAuthority::open`] loads one, and
//! [`CertificateAuthority::issue`] / [`CertificateAuthority::sign_csr`] /
//! [`CertificateAuthority::revoke`] / [`CertificateAuthority::crl`] do the work.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod cfssl;
pub mod csr;
mod error;
pub mod files;
pub mod inspect;
pub mod keys;
pub mod ledger;
pub mod names;
pub mod p12;
pub mod profile;
pub mod serial;

/// The date and duration types of this API (lifetimes, notAfter), re-exported so callers use
/// the same version.
pub use time;

pub use ca::{
    CaOptions, CertificateAuthority, CrlOptions, CsrSigning, IssuedCertificate, LeafRequest,
    RevokeOutcome, SignedCrl, WriteOptions,
};
pub use csr::CertificateRequest;
pub use error::PkiError;
pub use keys::KeyType;
pub use ledger::RevocationReason;
pub use names::{SubjectAltName, SubjectName};
pub use profile::{Profile, Usage};
pub use serial::{Fingerprint, Serial};
