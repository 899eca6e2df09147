//! `EdgeError`: why an edge could not start.

use std::net::SocketAddr;

/// Why an edge could not start; each names what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The edge's state (agent CA, tokens, grants) could not be opened.
    #[error(transparent)]
    State(#[from] moat_edge::JoinError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] moat_store::StoreError),
    /// The admin API's listener could not start.
    #[error(transparent)]
    Admin(#[from] moat_control::ControlError),
    /// The agent listener's TLS could not be set up.
    #[error(transparent)]
    Link(#[from] moat_edge::LinkError),
    /// The public gateway could not start (a certificate, or the address).
    #[error(transparent)]
    Gateway(#[from] moat_gateway::GatewayError),
    /// The agent listener's address could not be bound.
    #[error(
        "cannot listen for agents on {address}: {source}; free the port or choose another address"
    )]
    AgentListen {
        /// The address.
        address: SocketAddr,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The public listener's address could not be bound.
    #[error("cannot listen on {address}: {source}; free the port or choose another address")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The edge's own endpoint could not be configured (its domain or certificate).
    #[error("{0}")]
    Configuration(String),
}
