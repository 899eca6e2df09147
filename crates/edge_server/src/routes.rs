//! The public gateway's routes into the tunnels: each published endpoint's upstream connections
//! (or, for agent-terminated endpoints, its raw client bytes) become streams to an agent.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use moat_config::{EndpointConfig, TerminateAt};
use moat_gateway::{RelayTarget, RelayedClient, UpstreamRoute, UpstreamRoutes};
use moat_proxy::connector::{Connecting, UpstreamConnector, UpstreamStream};
use moat_telemetry::metrics::OpenTunnelStream;
use moat_tunnel::{StreamHeader, TunnelStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::registry::{AgentLink, EDGE_ENDPOINT, OFFLINE_HOST, Registry};

/// Routes every endpoint the edge serves: published ones into their agent's tunnel, the rest offline.
#[derive(Debug)]
pub(crate) struct EdgeRoutes {
    pub registry: Weak<Registry>,
}

impl UpstreamRoutes for EdgeRoutes {
    fn route(&self, endpoint: &EndpointConfig) -> Option<UpstreamRoute> {
        if endpoint.name == EDGE_ENDPOINT || endpoint.upstream.host == OFFLINE_HOST {
            return Some(UpstreamRoute::Offline);
        }
        let tunnel = Arc::new(Tunnel {
            registry: self.registry.clone(),
            hostname: endpoint.domain.clone(),
            address: format!("agent of {}", endpoint.domain),
        });
        Some(match endpoint.terminate_at {
            TerminateAt::Agent => UpstreamRoute::Relay(tunnel),
            TerminateAt::Edge => UpstreamRoute::Through(tunnel),
        })
    }
}

/// Opens streams for one hostname on the agent (or pool member) that publishes it now.
#[derive(Debug)]
struct Tunnel {
    registry: Weak<Registry>,
    hostname: String,
    /// How logs name the upstream.
    address: String,
}

impl Tunnel {
    async fn open(&self, header: StreamHeader) -> io::Result<UpstreamStream> {
        let registry = self
            .registry
            .upgrade()
            .ok_or_else(|| io::Error::other("the edge is shutting down"))?;
        let link = registry.pick(&self.hostname).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no agent publishes {} now", self.hostname),
            )
        })?;
        link.open_streams.fetch_add(1, Ordering::Relaxed);
        let counted = OpenStream {
            link,
            _gauge: registry.telemetry().tunnel_stream_opened(&self.hostname),
        };
        let stream = counted
            .link
            .opener
            .open_stream(&header)
            .await
            .map_err(|error| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("agent {}: {error}", counted.link.name),
                )
            })?;
        Ok(Box::new(Counted {
            stream,
            _open: counted,
        }))
    }
}

impl UpstreamConnector for Tunnel {
    /// An edge-terminated endpoint's upstream connection: the client's identity travels in the
    /// requests' headers (http) or the PROXY header (tls), so the stream names only the endpoint.
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
            let public_addr = self
                .registry
                .upgrade()
                .map_or(unspecified, |registry| registry.public_addr());
            let header = StreamHeader {
                endpoint: self.hostname.clone(),
                client_addr: unspecified,
                server_addr: public_addr,
                sni: Some(self.hostname.clone()),
                terminated_at_edge: true,
                client_identity: None,
            };
            self.open(header).await
        })
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl RelayTarget for Tunnel {
    fn open(&self, client: RelayedClient) -> Connecting<'_> {
        Box::pin(async move {
            let header = StreamHeader {
                endpoint: self.hostname.clone(),
                client_addr: client.peer,
                server_addr: client.local,
                sni: client.sni,
                terminated_at_edge: false,
                client_identity: None,
            };
            Tunnel::open(self, header).await
        })
    }
}

/// Counts a stream as open on its agent (for the pool's choice) and for its endpoint (in the
/// metrics) until dropped.
#[derive(Debug)]
struct OpenStream {
    link: Arc<AgentLink>,
    _gauge: OpenTunnelStream,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.link.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tunnel stream that stays counted on its agent while it lives.
struct Counted {
    stream: TunnelStream,
    _open: OpenStream,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
