//! What the gateway knows about one accepted client connection once its TLS handshake is done.

use std::net::SocketAddr;
use std::sync::Arc;

use moat_trust::ClientIdentity;

/// Facts about a client connection that the proxy needs for forwarding headers and policy.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The endpoint's name, for logs.
    pub endpoint: String,
    /// The client's address as seen by the listener.
    pub peer_addr: SocketAddr,
    /// The listener's own address.
    pub local_addr: SocketAddr,
    /// The server name the client asked for (SNI), if any.
    pub sni: Option<String>,
    /// True when the listener serves several endpoints and the SNI chose this one: a request's
    /// host must then belong to this endpoint too, or it is answered 421.
    pub sni_routed: bool,
    /// The negotiated TLS version, e.g. `TLSv1.3`.
    pub tls_version: &'static str,
    /// The negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: Option<&'static str>,
    /// True when ALPN chose `h2`.
    pub http2: bool,
    /// The verified client certificate, when the client presented one.
    pub client: Option<Arc<ClientIdentity>>,
}
