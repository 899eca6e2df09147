//! The agent dials its edge for a tunnel: TLS 1.3, its certificate as client auth, the edge's agent CA as the only root.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use tokio_rustls::client::TlsStream;

use super::address::EdgeAddress;
use super::connect::{check_alpn, client_builder, connect_tls};
use super::{AgentCredentials, LinkError, LinkSocket};

/// Dials the edge at `edge_addr` (`host:port`; usually `credentials.edge()`) for a tunnel:
/// TCP with no Nagle delay, then TLS 1.3 with ALPN `moat-tunnel/1`, the agent's certificate
/// as client authentication, and the edge verified for the address's host against
/// `edge-ca.pem` alone (not the system roots: only the edge the agent joined is trusted).
/// Connecting and the handshake share `timeout`. The stream returned negotiated
/// `moat-tunnel/1`; the tunnel session runs over it.
pub async fn dial(
    credentials: &AgentCredentials,
    edge_addr: &str,
    timeout: Duration,
) -> Result<TlsStream<LinkSocket>, LinkError> {
    dial_at(credentials, edge_addr, None, timeout).await
}

/// [`dial`] to `at`, one of the addresses `edge_addr`'s host resolves to (the edge's
/// certificate is still verified for the host): an agent keeps a session to each edge behind
/// one name.
pub async fn dial_at(
    credentials: &AgentCredentials,
    edge_addr: &str,
    at: Option<std::net::SocketAddr>,
    timeout: Duration,
) -> Result<TlsStream<LinkSocket>, LinkError> {
    let address = EdgeAddress::parse(edge_addr)?.reached_at(at);
    let mut roots = RootCertStore::empty();
    roots
        .add(credentials.edge_ca().clone())
        .map_err(|error| LinkError::BadCredentials {
            path: super::credentials::EDGE_CA_FILE.into(),
            problem: format!("is not a usable trust anchor ({error})"),
        })?;
    let mut config = client_builder("a tunnel dial")?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![credentials.certificate().clone()], credentials.key())
        .map_err(|error| LinkError::TlsSetup {
            what: "a tunnel dial",
            reason: error.to_string(),
        })?;
    config.alpn_protocols = vec![moat_tunnel::ALPN.to_vec()];
    let stream = connect_tls(&address, Arc::new(config), timeout).await?;
    check_alpn(&stream, moat_tunnel::ALPN, address.as_str())?;
    Ok(stream)
}
