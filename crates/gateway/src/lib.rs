//! Listeners, TLS termination with client-certificate enforcement, HTTP reverse proxy and TCP forwarding.
//!
//! [`Gateway::bind`] loads every endpoint of a [`moat_config::Config`] and opens its socket;
//! [`Gateway::serve`] accepts TLS connections and hands each to the endpoint's
//! [`http_proxy::HttpProxy`] or [`tcp_forward::TcpForwarder`] until shutdown.

mod access;
pub mod connection;
mod error;
mod gateway;
pub mod http_proxy;
mod local_ca;
pub mod tcp_forward;
mod tls;

pub use error::GatewayError;
pub use gateway::{BoundEndpoint, DRAIN_DEADLINE, Gateway, GatewayOptions};
pub use local_ca::local_ca_dir;
