//! What a client presented during a handshake that failed (the server name it asked for, its
//! certificate), so that the refused handshake's audit event can name them although no
//! connection came of it.

use std::sync::Arc;

use moat_trust::ClientIdentity;
use rustls_pki_types::CertificateDer;

/// The client certificate of a refused handshake.
#[derive(Debug, Clone)]
pub enum PresentedCertificate {
    /// Read by the verifier (the CAs accepted it and the rules refused it).
    Read(Arc<ClientIdentity>),
    /// As sent, refused before it was read; the audit event reads what it can of it.
    Unread(CertificateDer<'static>),
}

/// What one refused handshake showed before it ended.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The server name (SNI) the client asked for, from its ClientHello.
    pub sni: Option<String>,
    /// The client certificate, when the client sent one.
    pub certificate: Option<PresentedCertificate>,
}
