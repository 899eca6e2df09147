//! The joining agent's trust in the edge: the CA the token pins, found in the presented chain, is the only root.

use std::fmt;
use std::sync::Arc;

use moat_pki::Fingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Verifies the edge's agent listener for a join: its chain must hold a certificate whose
/// SHA-256 is the token's `ca_sha256`; that certificate becomes the only trust root and the
/// leaf is verified against it by webpki for the edge's name. Nothing is trusted on first use:
/// a chain without the pinned CA fails the handshake with [`PinRefused`].
#[derive(Debug)]
pub(crate) struct PinnedCaVerifier {
    pinned: Fingerprint,
    provider: Arc<CryptoProvider>,
}

/// The edge's chain held no certificate with the pinned fingerprint. Carried inside the
/// rustls error, so the join reports it as such rather than as a generic handshake failure.
#[derive(Debug, Clone)]
pub(crate) struct PinRefused {
    /// The token's fingerprint.
    pub(crate) pinned: String,
    /// The fingerprints of the presented certificates, in order.
    pub(crate) presented: Vec<String>,
}

impl fmt::Display for PinRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no presented certificate has the pinned SHA-256 {}",
            self.pinned
        )
    }
}

impl std::error::Error for PinRefused {}

impl PinnedCaVerifier {
    /// A verifier that trusts only the CA with SHA-256 `pinned`.
    pub(crate) fn new(pinned: Fingerprint, provider: Arc<CryptoProvider>) -> PinnedCaVerifier {
        PinnedCaVerifier { pinned, provider }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = || std::iter::once(end_entity).chain(intermediates);
        let Some(pinned_ca) = presented().find(|der| Fingerprint::of_der(der) == self.pinned)
        else {
            let refused = PinRefused {
                pinned: self.pinned.to_string(),
                presented: presented()
                    .map(|der| Fingerprint::of_der(der).to_string())
                    .collect(),
            };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(refused)),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(pinned_ca.clone().into_owned())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|error| rustls::Error::General(error.to_string()))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The [`PinRefused`] inside a failed handshake's error, when that is why it failed.
pub(crate) fn pin_refusal(error: &std::io::Error) -> Option<PinRefused> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    match rustls_error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PinRefused>().cloned()
        }
        _ => None,
    }
}
