//! CA bundles and CRLs turned into the client-certificate verifier, and the verified peer's identity.
//!
//! ```text
//! CaBundle::from_files(cas) ─┐
//! RevocationLists::from_files(crls, &cas) ─> ClientVerifier::builder(cas).with_crls(..).build()
//!                                             └─> rustls ServerConfig::with_client_cert_verifier
//! after the handshake: ClientIdentity::from_chain(conn.peer_certificates())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bundle;
mod crl;
mod error;
mod identity;
mod refusal;
mod verified;
mod verifier;
mod x509;

pub use bundle::{CaBundle, CaCertificate};
pub use crl::{RevocationLists, StaleCrl};
pub use error::TrustError;
pub use identity::{ClientIdentity, SubjectAltName};
pub use refusal::RefusalReason;
pub use verifier::{CertificateRefused, ClientVerifier, ClientVerifierBuilder};

/// The crypto provider whose signature algorithms verify certificates, CRLs and handshakes: the
/// same aws-lc-rs provider the gateway's TLS uses, so both sides accept the same algorithms.
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}
