//! Where an endpoint's clients go when not to its configured upstream over TCP: an edge sends
//! them through an agent's tunnel, relays them before TLS, or answers that the endpoint is offline.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use moat_config::EndpointConfig;
use moat_proxy::connector::{Connecting, UpstreamConnector};

/// Chooses each endpoint's route when it is loaded (at start and at every reload). A process
/// that gives none ([`crate::GatewayOptions::upstream_routes`]) dials every upstream over TCP.
pub trait UpstreamRoutes: Send + Sync + fmt::Debug {
    /// The route of `endpoint`; `None` dials its configured upstream over TCP.
    fn route(&self, endpoint: &EndpointConfig) -> Option<UpstreamRoute>;
}

/// How one endpoint's connections leave the gateway.
#[derive(Clone, Debug)]
pub enum UpstreamRoute {
    /// TLS ends here, as configured; upstream connections are opened by this connector (an
    /// edge: streams over the agent's tunnel).
    Through(Arc<dyn UpstreamConnector>),
    /// TLS does not end here: the client's bytes, from its ClientHello on, are relayed to what
    /// this target opens, where the endpoint's key lives. The endpoint needs no certificate.
    Relay(Arc<dyn RelayTarget>),
    /// Nothing serves the endpoint now: an http endpoint answers every request 404 "endpoint
    /// offline" (its certificate still completes the handshake); a tls endpoint refuses the
    /// handshake with `unrecognized_name`, as for a name nobody serves.
    Offline,
}

/// Opens the far end of a relayed client connection.
pub trait RelayTarget: Send + Sync + fmt::Debug {
    /// Opens the stream `client`'s bytes go to.
    fn open(&self, client: RelayedClient) -> Connecting<'_>;
}

/// What the gateway knows of a relayed client before any TLS: what the far end is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedClient {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address it connected to.
    pub local: SocketAddr,
    /// The server name of its ClientHello.
    pub sni: Option<String>,
}
