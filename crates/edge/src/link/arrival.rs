//! The edge meets a connection on its agent listener: the TLS handshake, then a tunnel or a join by ALPN.

use std::time::Duration;

use moat_trust::ClientIdentity;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::error::Side;
use super::{JOIN_ALPN, LinkError, LinkSocket, link_socket};

/// What arrived on the agent listener.
#[derive(Debug)]
pub enum Arrival {
    /// A joined agent (its certificate verified against the agents' CAs) opening a tunnel.
    Tunnel {
        /// Who the agent is, read from its verified certificate (CN = its name). Boxed: the
        /// identity (~400 bytes) would otherwise make every `Arrival` that much larger.
        agent: Box<ClientIdentity>,
        /// The TLS stream, ALPN `moat-tunnel/1`: the tunnel session runs over it.
        stream: TlsStream<LinkSocket>,
    },
    /// An agent that wants to join (ALPN `moat-join/1`); hand it to [`super::serve_join`].
    Join(TlsStream<LinkSocket>),
}

/// Runs the TLS handshake on `tcp` with the agent listener's `acceptor` within
/// `handshake_timeout`, then sorts the connection by its ALPN: `moat-tunnel/1` with a verified
/// client certificate is a [`Arrival::Tunnel`]; `moat-join/1` is an [`Arrival::Join`]. A tunnel
/// without a client certificate, or no known ALPN, is an error and the connection is dropped.
/// A client certificate that fails verification has already failed the handshake (with an alert).
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    handshake_timeout: Duration,
) -> Result<Arrival, LinkError> {
    let peer = tcp.peer_addr().map_err(|source| LinkError::Io {
        peer: "an arriving agent".to_owned(),
        source,
    })?;
    // Tunnel frames are small and latency-bound; Nagle would hold them back.
    tcp.set_nodelay(true).map_err(|source| LinkError::Io {
        peer: peer.to_string(),
        source,
    })?;
    let stream = tokio::time::timeout(handshake_timeout, acceptor.accept(link_socket(tcp)))
        .await
        .map_err(|_| LinkError::Timeout {
            step: "the TLS handshake",
            peer: peer.to_string(),
            after: handshake_timeout,
        })?
        .map_err(|source| LinkError::handshake(peer.to_string(), source, Side::Edge))?;
    let connection = stream.get_ref().1;
    match connection.alpn_protocol() {
        Some(alpn) if alpn == moat_tunnel::ALPN => {
            let chain = connection
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .ok_or(LinkError::NoClientCertificate { peer })?;
            let agent = ClientIdentity::from_chain(chain)
                .map_err(|source| LinkError::Identity { peer, source })?;
            Ok(Arrival::Tunnel {
                agent: Box::new(agent),
                stream,
            })
        }
        Some(alpn) if alpn == JOIN_ALPN => Ok(Arrival::Join(stream)),
        other => Err(LinkError::Alpn {
            peer: peer.to_string(),
            negotiated: other.map_or_else(
                || "none".to_owned(),
                |alpn| String::from_utf8_lossy(alpn).into_owned(),
            ),
            expected: "moat-tunnel/1 or moat-join/1".to_owned(),
            fix: "only moat agents connect to the agent listener",
        }),
    }
}
