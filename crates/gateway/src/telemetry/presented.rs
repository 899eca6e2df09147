//! Remembers what a client presented during its handshake (the server name it asked for, its
//! certificate and why that was refused), so that the audit event of a refused handshake can
//! name them although no connection came of it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use moat_trust::{ClientVerifier, RefusalReason};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The client certificate of one handshake, as the verifier saw it.
#[derive(Debug, Clone)]
pub struct PresentedCertificate {
    /// The leaf the client sent.
    pub certificate: CertificateDer<'static>,
    /// Why the verifier refused it; `None` when it passed.
    pub refusal: Option<RefusalReason>,
}

/// What one handshake showed before it ended.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The server name (SNI) the client asked for, from its ClientHello.
    pub sni: Option<String>,
    /// The client certificate, once the verifier saw it.
    pub certificate: Option<PresentedCertificate>,
}

type Slot = Arc<Mutex<Presented>>;

tokio::task_local! {
    /// The slot of the handshake being driven by the current task. rustls calls the resolver
    /// and the verifier synchronously while the accept future is polled, so the task that
    /// drives the handshake is the one whose slot is set.
    static PRESENTED: Slot;
}

/// Drives `handshake` and returns its output with what the client presented.
pub async fn capture_presented<F: Future>(handshake: F) -> (F::Output, Presented) {
    let slot = Slot::default();
    let output = PRESENTED.scope(Arc::clone(&slot), handshake).await;
    let presented = std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
    (output, presented)
}

/// Updates the current handshake's record; does nothing outside [`capture_presented`].
fn record(update: impl FnOnce(&mut Presented)) {
    let _ =
        PRESENTED.try_with(|slot| update(&mut slot.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// Wraps moat's [`ClientVerifier`], recording each verdict in the handshake's slot. Outside
/// [`capture_presented`] it verifies exactly the same and records nothing.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<ClientVerifier>,
}

impl RecordingVerifier {
    /// Records the verdicts of `inner`.
    pub fn new(inner: Arc<ClientVerifier>) -> RecordingVerifier {
        RecordingVerifier { inner }
    }
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_with_reason(end_entity, intermediates, now);
        record(|presented| {
            presented.certificate = Some(PresentedCertificate {
                certificate: end_entity.clone().into_owned(),
                refusal: verdict.as_ref().err().map(|refused| refused.reason),
            });
        });
        verdict.map_err(|refused| refused.error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
