//! Dialing the edge's agent listener: TCP (no Nagle delay) and a TLS 1.3 handshake, both within one timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::address::EdgeAddress;
use super::error::Side;
use super::{LinkError, LinkSocket, link_socket};

/// Connects to `address` and runs the TLS handshake with `config`, all within `timeout`.
/// A failed handshake is [`LinkError::Handshake`] carrying rustls's error.
pub(crate) async fn connect_tls(
    address: &EdgeAddress,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<LinkSocket>, LinkError> {
    let attempt = async {
        let connected = match address.at() {
            Some(at) => TcpStream::connect(at).await,
            None => TcpStream::connect(address.as_str()).await,
        };
        let tcp = connected.map_err(|source| LinkError::Connect {
            address: address.as_str().to_owned(),
            source,
        })?;
        // Tunnel frames are small and latency-bound; Nagle would hold them back.
        tcp.set_nodelay(true).map_err(|source| LinkError::Connect {
            address: address.as_str().to_owned(),
            source,
        })?;
        TlsConnector::from(config)
            .connect(address.server_name(), link_socket(tcp))
            .await
            .map_err(|source| {
                LinkError::handshake(address.as_str().to_owned(), source, Side::Agent)
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| LinkError::Timeout {
            step: "connecting and the TLS handshake",
            peer: address.as_str().to_owned(),
            after: timeout,
        })?
}

/// The client side's TLS 1.3 builder, on the same aws-lc-rs provider as the edge.
pub(crate) fn client_builder(
    what: &'static str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, LinkError> {
    rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| LinkError::TlsSetup {
            what,
            reason: error.to_string(),
        })
}

/// Checks that the handshake chose `expected`; anything else is [`LinkError::Alpn`].
pub(crate) fn check_alpn(
    stream: &TlsStream<LinkSocket>,
    expected: &[u8],
    peer: &str,
) -> Result<(), LinkError> {
    let negotiated = stream.get_ref().1.alpn_protocol();
    if negotiated == Some(expected) {
        return Ok(());
    }
    Err(LinkError::Alpn {
        peer: peer.to_owned(),
        negotiated: negotiated.map_or_else(
            || "none".to_owned(),
            |alpn| String::from_utf8_lossy(alpn).into_owned(),
        ),
        expected: String::from_utf8_lossy(expected).into_owned(),
        fix: "check that the address is a moat edge's agent listener of a compatible version",
    })
}
