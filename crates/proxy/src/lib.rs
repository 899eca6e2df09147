//! What runs after the handshake, over any stream: the HTTP reverse proxy of `http` endpoints
//! and the byte forwarder of `tls` endpoints, reaching the upstream through a connector.
//!
//! Both take the client's stream as any `AsyncRead + AsyncWrite` (a TLS stream from the
//! gateway's listener today, a stream the edge relays from an agent next) plus a
//! [`moat_telemetry::ConnectionInfo`] describing who is on the other end. Both reach the
//! upstream through an [`connector::UpstreamConnector`]: TCP today, a tunnel stream next.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connector;
pub mod http;
pub mod proxy_protocol;
pub mod relay;
pub mod tcp_forward;

pub use connector::{TcpConnector, UpstreamConnector, UpstreamStream};
pub use http::{HttpProxy, ProxyError};
pub use relay::copy_both_ways;
pub use tcp_forward::{ForwardEnd, ForwardOutcome, TcpForwarder};
