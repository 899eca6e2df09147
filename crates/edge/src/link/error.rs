//! Why the agent link failed: each variant names the address or file and what to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use moat_pki::PkiError;
use moat_trust::TrustError;

use crate::agent_ca::{AgentCaError, AgentNameError};
use crate::join::JoinError;
use crate::token::TokenError;

/// Why the agent listener, an arrival, a join or a dial failed. Messages name the address or
/// file involved and the fix; they never name a CLI command or flag (the CLI adds those) and
/// never hold a key or a token's secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A name given for the agent listener's certificate is neither a DNS name nor an IP address.
    #[error(
        "agent listener name {name:?} is not a DNS name or an IP address ({reason}); give the names agents reach the edge by, such as edge.example.com or 203.0.113.7"
    )]
    ListenerName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Making, reading or writing a key, certificate or CSR failed (the message names the file).
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The agent CA could not be opened or made.
    #[error(transparent)]
    AgentCa(#[from] AgentCaError),
    /// The operator's bundle of agent CAs could not be read.
    #[error(transparent)]
    AgentCas(#[from] TrustError),
    /// The edge's state files could not be locked.
    #[error(transparent)]
    State(#[from] crate::state_lock::StateError),
    /// rustls refused the certificates or settings it was given.
    #[error("cannot set up TLS for {what}: {reason}")]
    TlsSetup {
        /// Which side: the agent listener, a join, a dial.
        what: &'static str,
        /// rustls's explanation.
        reason: String,
    },
    /// An edge address is not `host:port`.
    #[error(
        "edge address {address:?} {problem}; write it as host:port, e.g. edge.example.com:4443 or [2001:db8::1]:4443"
    )]
    BadAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The agent name asked for is not a valid agent name.
    #[error(transparent)]
    AgentName(#[from] AgentNameError),
    /// The join token's text is malformed or expired (checked before dialing).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The TCP connection to the edge failed.
    #[error(
        "cannot connect to the edge at {address}: {source}; check that the edge runs, listens for agents on that port and that a firewall lets the agent out"
    )]
    Connect {
        /// The edge address.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connecting, the handshake or an answer took too long.
    #[error(
        "{step} with {peer} took longer than {after:?}; check the network path and that {peer} is a moat edge's agent listener"
    )]
    Timeout {
        /// What was under way.
        step: &'static str,
        /// The edge address, or the agent's socket address.
        peer: String,
        /// How long it was given.
        after: Duration,
    },
    /// The TLS handshake failed (certificate refused, alert received, connection closed).
    #[error("TLS handshake with {peer} failed: {source}{hint}")]
    Handshake {
        /// The edge address, or the agent's socket address.
        peer: String,
        /// rustls's or the socket's error.
        source: std::io::Error,
        /// What the cause usually means and what to do, starting with "; " (empty when unknown).
        hint: &'static str,
    },
    /// The edge's certificate chain does not hold the agent CA the join token pins.
    #[error(
        "the edge at {address} is not the edge the join token was made for: no certificate it presented has SHA-256 {pinned} (it presented {presented}); check the edge address, or ask the edge's operator for a new token"
    )]
    NotTheTokensEdge {
        /// The edge address dialed.
        address: String,
        /// The fingerprint the token pins.
        pinned: String,
        /// The fingerprints of the certificates the edge presented, comma-separated.
        presented: String,
    },
    /// The peer did not negotiate the protocol this side expects.
    #[error("{peer} negotiated ALPN {negotiated} but {expected} was expected; {fix}")]
    Alpn {
        /// The peer's address.
        peer: String,
        /// What it negotiated, or `none`.
        negotiated: String,
        /// What this side offered.
        expected: String,
        /// What to do.
        fix: &'static str,
    },
    /// An agent asked for a tunnel without presenting a client certificate.
    #[error(
        "agent {peer} asked for a tunnel without a client certificate; an agent must join the edge first and dial with the certificate it received"
    )]
    NoClientCertificate {
        /// The agent's socket address.
        peer: SocketAddr,
    },
    /// The agent's verified certificate could not be read.
    #[error("agent {peer}: cannot read its verified certificate: {source}")]
    Identity {
        /// The agent's socket address.
        peer: SocketAddr,
        /// The parser's error.
        source: TrustError,
    },
    /// A join message is malformed, too large, or the connection closed before it arrived.
    #[error(
        "join exchange with {peer}: {problem}; both sides must run a moat version that speaks moat-join/1"
    )]
    Protocol {
        /// The peer's address.
        peer: String,
        /// What was wrong.
        problem: String,
    },
    /// Reading or writing the join exchange failed.
    #[error("join exchange with {peer}: {source}")]
    Io {
        /// The peer's address.
        peer: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The edge refused to let the agent join; the message is the edge's, naming the fix.
    #[error("the edge at {address} refused the join: {message}")]
    Refused {
        /// The edge address.
        address: String,
        /// The edge's reason.
        message: String,
    },
    /// The edge refused an agent's join (edge side; the agent was told the same message).
    #[error("refused the join of agent {peer}: {source}")]
    JoinRefused {
        /// The agent's socket address.
        peer: String,
        /// Why (boxed: the edge's join errors are large, the link's other errors small).
        source: Box<JoinError>,
    },
    /// Joining ran into an internal failure (the signing task stopped).
    #[error("the join of agent {peer} could not finish: {reason}")]
    JoinAborted {
        /// The agent's socket address.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// No agent credentials in the directory.
    #[error("{}: no agent credentials here; join the edge first", path.display())]
    NoCredentials {
        /// The missing file.
        path: PathBuf,
    },
    /// A credentials file is unreadable or does not hold what it should.
    #[error("{}: {problem}; join the edge again to replace the agent's credentials", path.display())]
    BadCredentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Which end of the agent link saw a handshake fail: the same rustls error calls for a
/// different fix on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The edge, judging an agent.
    Edge,
    /// An agent, judging the edge.
    Agent,
}

impl LinkError {
    /// A failed handshake, with the fix its cause usually calls for.
    pub(crate) fn handshake(peer: String, source: std::io::Error, side: Side) -> LinkError {
        let hint = handshake_hint(&source, side);
        LinkError::Handshake { peer, source, hint }
    }
}

fn handshake_hint(source: &std::io::Error, side: Side) -> &'static str {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    let Some(error) = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return "";
    };
    match (side, error) {
        (Side::Edge, Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature)) => {
            "; the agent's certificate is not from a CA the edge trusts for agents: the agent must join this edge, or get a certificate from one of its agent CAs"
        }
        (Side::Edge, Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. })) => {
            "; the agent's certificate expired: the agent must join the edge again"
        }
        (Side::Edge, Error::AlertReceived(_)) => {
            "; the agent refused the edge's certificate: a joining agent's token pins another edge's agent CA, or a dialing agent's edge CA is not this edge's"
        }
        (Side::Edge, Error::PeerIncompatible(_) | Error::NoApplicationProtocol) => {
            "; the client does not speak TLS 1.3 with ALPN moat-tunnel/1 or moat-join/1: only moat agents connect here"
        }
        (
            Side::Agent,
            Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }),
        ) => {
            "; the edge's certificate does not carry this host: dial the edge by a name or address its operator gave the agent listener"
        }
        (Side::Agent, Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature)) => {
            "; the edge's certificate is not from the agent CA this agent trusts: the edge's agent CA was replaced, or this is another edge; join again with a new token"
        }
        (Side::Agent, Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. })) => {
            "; the edge's listener certificate expired: the edge renews it when it starts, so its operator should restart it"
        }
        (Side::Agent, Error::AlertReceived(Alert::NoApplicationProtocol))
        | (Side::Agent, Error::PeerIncompatible(_)) => {
            "; the address is not a moat edge's agent listener, or the edge runs an incompatible version"
        }
        (Side::Agent, Error::AlertReceived(_)) => {
            "; the edge refused this agent's certificate: join the edge again"
        }
        _ => "",
    }
}
