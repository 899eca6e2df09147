//! Handshakes the gateway refused: they never become requests, so the inspector keeps them
//! beside the exchanges, with the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use moat_telemetry::HandshakeRefusal;
use moat_telemetry::presented::Presented;
use moat_telemetry::presented::PresentedCertificate;
use moat_trust::ClientIdentity;
use serde_json::{Value, json};

use crate::entry::{client_json, rfc3339};

/// One refused handshake.
#[derive(Debug)]
pub(crate) struct RefusedHandshake {
    pub id: String,
    pub time: SystemTime,
    pub endpoint: String,
    pub peer: SocketAddr,
    pub reason: HandshakeRefusal,
    pub sni: Option<String>,
    /// The certificate the client showed, as far as it could be read.
    pub client: Option<Arc<ClientIdentity>>,
}

impl RefusedHandshake {
    pub(crate) fn new(
        id: String,
        endpoint: &str,
        peer: SocketAddr,
        reason: HandshakeRefusal,
        presented: &Presented,
    ) -> RefusedHandshake {
        let client = presented
            .certificate
            .as_ref()
            .and_then(|certificate| match certificate {
                PresentedCertificate::Read(identity) => Some(Arc::clone(identity)),
                PresentedCertificate::Unread(der) => {
                    ClientIdentity::from_chain(std::slice::from_ref(der))
                        .ok()
                        .map(Arc::new)
                }
            });
        RefusedHandshake {
            id,
            time: SystemTime::now(),
            endpoint: endpoint.to_owned(),
            peer,
            reason,
            sni: presented.sni.clone(),
            client,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "time": rfc3339(self.time),
            "endpoint": self.endpoint,
            "remote_addr": self.peer.to_string(),
            "reason": self.reason.as_str(),
            "detail": self.reason.to_string(),
            "sni": self.sni,
            "client": self.client.as_deref().map(client_json),
        })
    }
}
