//! The agent link: the edge's agent listener TLS, the join exchange, and the agent's credentials and dial.
//!
//! ```text
//! agent                                        edge (agent listener, AgentListenerTls)
//! join(token) ── TLS 1.3, ALPN moat-join/1 ──> accept() -> Arrival::Join -> serve_join()
//!   trusts only the CA the token pins           JoinRequest {token, csr_pem}
//!   <───────── JoinAnswer::Joined {certificate, CA, name, grant} | Refused {message}
//!   writes AgentCredentials ($MOAT_HOME/agent)
//! dial(credentials) ── TLS 1.3, client cert, ──> accept() -> Arrival::Tunnel {agent identity}
//!                      ALPN moat-tunnel/1          (certificate verified against the agents' CAs)
//! ```
//!
//! The listener's certificate always comes from the edge's own agent CA, whose SHA-256 join
//! tokens carry: a joining agent has no other way to know the edge, and trusts nothing on first use.

mod address;
mod arrival;
mod connect;
mod credentials;
mod dial;
mod error;
mod join_client;
mod join_server;
mod join_wire;
pub(crate) mod listener_tls;
mod pin;

use std::sync::Arc;

use tokio::io::BufReader;
use tokio::net::TcpStream;

pub use arrival::{Arrival, accept};
pub use credentials::{
    AGENT_CERT_FILE, AGENT_INFO_FILE, AGENT_KEY_FILE, AgentCredentials, AgentInfo, EDGE_CA_FILE,
};
pub use dial::{dial, dial_at};
pub use error::LinkError;
pub use join_client::{JOIN_ANSWER_TIMEOUT, JOIN_CONNECT_TIMEOUT, join};
pub use join_server::{JOIN_REQUEST_TIMEOUT, serve_join};
pub use join_wire::{JOIN_ALPN, JoinAnswer, JoinRequest, MAX_JOIN_MESSAGE};
pub use listener_tls::{
    AGENT_LISTENER_DIR, AgentListenerTls, LISTENER_CERT_FILE, LISTENER_KEY_FILE, LOOPBACK_NAMES,
    RENEW_BEFORE_SECS,
};

/// Both sides' crypto: aws-lc-rs, as the gateway and moat-trust use, so they agree on algorithms.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The socket under a link's TLS: TCP with a read buffer. rustls asks the socket for at most
/// 4 KiB at a time (up to one 16 KiB record), so a tunnel carrying a 64 MiB download made
/// about 16,000 `recvfrom` calls on the reading side; through a buffer of one
/// largest HTTP/2 frame (64 KiB, see moat-tunnel) a read takes all the socket has, up to a
/// frame and a half of records. Writes go straight through (rustls already writes all its
/// pending records with one vectored write).
pub type LinkSocket = BufReader<TcpStream>;

/// A link's read buffer: one largest tunnel frame. It stays allocated while the link lives,
/// 64 KiB per agent on the edge.
const LINK_READ_BUFFER: usize = 64 * 1024;

/// `tcp` with a link's read buffer.
pub(crate) fn link_socket(tcp: TcpStream) -> LinkSocket {
    BufReader::with_capacity(LINK_READ_BUFFER, tcp)
}
