//! What one line of the audit log holds, as the report reads it back: the fields of each event
//! that [`crate::audit`] writes and the report uses (any other field is ignored).

use serde::Deserialize;

/// One audit event. An `event` this version does not know (written by a later one) is
/// [`Record::Unknown`], counted but not otherwise used.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Record {
    /// `tls_handshake`.
    TlsHandshake(Handshake),
    /// `http_request`.
    HttpRequest(Request),
    /// `config_reloaded`.
    ConfigReloaded(Reload),
    /// `agent_connected`.
    AgentConnected(AgentSession),
    /// `agent_disconnected`.
    AgentDisconnected(AgentSession),
    /// `endpoint_published`.
    EndpointPublished(Publication),
    /// `endpoint_removed`.
    EndpointRemoved(Publication),
    /// Any other `event`.
    #[serde(other)]
    Unknown,
}

impl Record {
    /// The event's `time` as written, `None` for an unknown event (whose fields are not read).
    pub(crate) fn time(&self) -> Option<&str> {
        match self {
            Record::TlsHandshake(event) => Some(&event.time),
            Record::HttpRequest(event) => Some(&event.time),
            Record::ConfigReloaded(event) => Some(&event.time),
            Record::AgentConnected(event) | Record::AgentDisconnected(event) => Some(&event.time),
            Record::EndpointPublished(event) | Record::EndpointRemoved(event) => Some(&event.time),
            Record::Unknown => None,
        }
    }

    /// The endpoint (or hostname) the event belongs to; `None` for process-wide events
    /// (reloads, agent sessions), which an endpoint filter keeps.
    pub(crate) fn endpoint(&self) -> Option<&str> {
        match self {
            Record::TlsHandshake(event) => Some(&event.endpoint),
            Record::HttpRequest(event) => Some(&event.endpoint),
            Record::EndpointPublished(event) | Record::EndpointRemoved(event) => {
                Some(&event.hostname)
            }
            Record::ConfigReloaded(_)
            | Record::AgentConnected(_)
            | Record::AgentDisconnected(_)
            | Record::Unknown => None,
        }
    }
}

/// A `tls_handshake` event.
#[derive(Debug, Deserialize)]
pub(crate) struct Handshake {
    pub(crate) time: String,
    /// The endpoint; before the SNI chose one, every endpoint of the address joined by `,`.
    pub(crate) endpoint: String,
    /// The client's `ip:port`, which its requests on the connection repeat.
    pub(crate) peer: String,
    pub(crate) client_certificate: Option<Certificate>,
    /// `accepted` or `refused`.
    pub(crate) outcome: String,
    pub(crate) reason: Option<String>,
}

/// The `client_certificate` of a handshake.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Certificate {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) serial: String,
    pub(crate) fingerprint_sha256: String,
    /// RFC 3339; empty when moat could not express it.
    pub(crate) not_after: String,
}

/// An `http_request` event.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    pub(crate) time: String,
    pub(crate) endpoint: String,
    pub(crate) peer: String,
    pub(crate) host: Option<String>,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) rule: Option<String>,
    pub(crate) client_subject: Option<String>,
    /// Null when the request never went upstream: moat answered it itself.
    pub(crate) upstream_ms: Option<f64>,
    #[serde(default)]
    pub(crate) bytes_in: u64,
    #[serde(default)]
    pub(crate) bytes_out: u64,
}

/// A `config_reloaded` event.
#[derive(Debug, Deserialize)]
pub(crate) struct Reload {
    pub(crate) time: String,
    /// `success` or `failure`.
    pub(crate) outcome: String,
}

/// An `agent_connected` or `agent_disconnected` event.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentSession {
    pub(crate) time: String,
    pub(crate) agent: String,
    pub(crate) agent_address: String,
    /// Why the session ended (`agent_disconnected` only).
    pub(crate) reason: Option<String>,
}

/// An `endpoint_published` or `endpoint_removed` event.
#[derive(Debug, Deserialize)]
pub(crate) struct Publication {
    pub(crate) time: String,
    pub(crate) hostname: String,
    /// Why it was removed (`endpoint_removed` only).
    pub(crate) reason: Option<String>,
}
