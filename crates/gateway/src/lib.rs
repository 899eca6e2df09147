//! Listeners, TLS termination with client-certificate enforcement, HTTP reverse proxy and TCP forwarding.
//!
//! [`Gateway::bind`] loads every endpoint of a [`moat_config::Config`] and opens its socket
//! (endpoints with the same listen address share one, and the SNI picks among them);
//! [`Gateway::serve`] accepts TLS connections and hands each to the endpoint's
//! [`moat_proxy::HttpProxy`] or [`moat_proxy::TcpForwarder`] until shutdown; a [`Reloader`]
//! swaps in new certificates, trust and configuration meanwhile; an [`Entrance`] takes a client
//! connection that arrived on a stream (an edge's tunnel) into the same path. Every handshake
//! and request is reported to the process's [`moat_telemetry::Telemetry`]: audit events,
//! Prometheus metrics, readiness and certificate expiry.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod endpoint;
mod entrance;
mod error;
mod expiry_items;
pub mod explain;
mod gateway;
mod handshake;
mod local_ca;
mod reload;
pub mod sni;
mod tls;
mod upstream_route;

pub use entrance::{Entrance, EntranceClosed};
pub use error::GatewayError;
pub use gateway::{BoundEndpoint, DRAIN_DEADLINE, Gateway, GatewayOptions};
pub use local_ca::local_ca_dir;
pub use reload::{ReloadSummary, Reloader};
pub use tls::resumes_sessions;
pub use upstream_route::{RelayTarget, RelayedClient, UpstreamRoute, UpstreamRoutes};
