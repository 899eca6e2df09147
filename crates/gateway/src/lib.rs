//! Listeners, TLS termination with client-certificate enforcement, HTTP reverse proxy and TCP forwarding.
//!
//! [`Gateway::bind`] loads every endpoint of a [`moat_config::Config`] and opens its socket
//! (endpoints with the same listen address share one, and the SNI picks among them);
//! [`Gateway::serve`] accepts TLS connections and hands each to the endpoint's
//! [`http_proxy::HttpProxy`] or [`tcp_forward::TcpForwarder`] until shutdown; a [`Reloader`]
//! swaps in new certificates, trust and configuration meanwhile. Every handshake and request is
//! reported to the process's [`moat_telemetry::Telemetry`]: audit events, Prometheus metrics,
//! readiness and certificate expiry.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod endpoint;
mod error;
pub mod explain;
mod gateway;
pub mod http_proxy;
mod local_ca;
pub mod proxy_protocol;
mod reload;
pub mod sni;
pub mod tcp_forward;
mod tls;

pub use error::GatewayError;
pub use gateway::{BoundEndpoint, DRAIN_DEADLINE, Gateway, GatewayOptions};
pub use local_ca::local_ca_dir;
pub use reload::{ReloadSummary, Reloader};
pub use tls::resumes_sessions;
