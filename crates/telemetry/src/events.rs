//! The event stream: what the gateway reports, and the trait of those who consume it.
//!
//! Events are borrowed views of facts the gateway already holds, handed to every subscriber on
//! the task where they happen; each subscriber takes what it needs (the metrics count, the audit
//! log encodes a line, the edge console copies and sends). Building nothing a subscriber does
//! not ask for keeps a gateway without an audit log as cheap as before the stream existed.

use std::net::SocketAddr;

use crate::audit::HttpRequestEvent;
use crate::connection::ConnectionInfo;
use crate::expiry::ExpiringItem;
use crate::metrics::ReloadOutcome;
use crate::presented::Presented;
use crate::reasons::{AgentDisconnect, EndpointRemoval, HandshakeRefusal};

/// One thing that happened.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A TLS handshake completed; the connection is about to be served.
    HandshakeAccepted {
        /// The connection.
        info: &'a ConnectionInfo,
        /// The negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
        cipher_suite: Option<&'a str>,
        /// The negotiated ALPN protocol.
        alpn: Option<&'a str>,
    },
    /// A handshake was refused (or the connection closed or timed out before it completed).
    HandshakeRefused {
        /// The endpoint the SNI chose; before that, every endpoint of the address, joined by `,`.
        endpoint: &'a str,
        /// The client's address.
        peer: SocketAddr,
        /// Why.
        reason: HandshakeRefusal,
        /// What the client showed before the end.
        presented: &'a Presented,
    },
    /// An HTTP request's response ended (or the client left).
    RequestFinished(&'a HttpRequestEvent),
    /// Bytes relayed for a `tls` endpoint's connection.
    BytesForwarded {
        /// The endpoint.
        endpoint: &'a str,
        /// From the client to the upstream.
        from_client: u64,
        /// From the upstream to the client.
        to_client: u64,
    },
    /// A configuration reload ended.
    ConfigReloaded(ReloadOutcome),
    /// The server certificates, CAs and CRLs every endpoint uses now (the whole set, replacing
    /// the one before), at start and after every reload: on an edge, agents' uploads included.
    CertificatesInUse(&'a [ExpiringItem]),
    /// An agent opened its session with the edge.
    AgentConnected {
        /// The agent's name: its certificate's CN, else its subject.
        agent: &'a str,
        /// Where it connected from.
        address: SocketAddr,
        /// Its certificate's serial number, hex.
        serial: &'a str,
    },
    /// An agent's session with the edge ended.
    AgentDisconnected {
        /// The agent's name.
        agent: &'a str,
        /// Where it had connected from.
        address: SocketAddr,
        /// Why, as a stable word.
        reason: AgentDisconnect,
        /// What happened, in words.
        detail: &'a str,
    },
    /// The edge serves a hostname for an agent (one event per member of a pool).
    EndpointPublished {
        /// The hostname.
        hostname: &'a str,
        /// The agent publishing it.
        agent: &'a str,
        /// `http` or `tls`.
        kind: &'a str,
        /// Where TLS ends: `edge` or `agent`.
        terminate_at: &'a str,
        /// Whether other agents may share the hostname.
        pool: bool,
    },
    /// The edge stopped serving a hostname for an agent.
    EndpointRemoved {
        /// The hostname.
        hostname: &'a str,
        /// The agent that published it.
        agent: &'a str,
        /// Why.
        reason: EndpointRemoval,
    },
}

/// A consumer of the event stream (the audit log, the metrics, the edge console). Called
/// synchronously on the task where the event happens, so it must not block: count, encode into
/// a buffer, or copy and send.
pub trait Subscriber: Send + Sync + std::fmt::Debug {
    /// Takes what it needs of `event`.
    fn on_event(&self, event: &Event<'_>);
}
