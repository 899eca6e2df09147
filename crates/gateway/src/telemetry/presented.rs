//! Remembers what a client presented during its handshake (the server name it asked for, its
//! certificate and why that was refused), so that the audit event of a refused handshake can
//! name them although no connection came of it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use moat_trust::{ClientIdentity, RefusalReason};
use rustls_pki_types::CertificateDer;

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
    /// The accepted chain as read by the verifier (when it needed it for a tls endpoint's rules),
    /// so that the connection does not read the certificate again.
    pub identity: Option<Arc<ClientIdentity>>,
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

/// Records the identity the verifier read from an accepted chain; does nothing outside
/// [`capture_presented`].
pub(crate) fn record_identity(identity: Arc<ClientIdentity>) {
    record(|presented| presented.identity = Some(identity));
}

/// Records the current handshake's client certificate and the verifier's verdict on it (`None`
/// when it passed); does nothing outside [`capture_presented`].
pub(crate) fn record_certificate(certificate: &CertificateDer<'_>, refusal: Option<RefusalReason>) {
    record(|presented| {
        presented.certificate = Some(PresentedCertificate {
            certificate: certificate.clone().into_owned(),
            refusal,
        });
    });
}
