//! A certificate authority over files: make one, open one, and issue, sign, revoke and list revocations.
//!
//! [`CertificateAuthority`] is defined in `authority.rs`; each other file adds one kind of work
//! to it. This file only names the modules and re-exports what callers use.

mod authority;
mod create;
mod crl;
mod files;
mod load;
mod options;
mod revoke;
mod sign;

pub use authority::{CA_CERT_FILE, CA_KEY_FILE, CHAIN_FILE, CertificateAuthority};
pub use files::{IssuedCertificate, WriteOptions};
pub use load::read_first_certificate;
pub use options::{CaOptions, CrlOptions, CsrSigning, LeafRequest, RevokeOutcome, SignedCrl};
