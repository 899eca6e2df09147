//! What the policy is asked about: the request's facts and the verified client, gathered before any rule runs.

use std::net::{IpAddr, SocketAddr};

use moat_trust::{CaCertificate, ClientIdentity};

/// What is known about a request when the policy is asked; no I/O happens after this is built.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's port.
    pub source_port: u16,
    /// The address the client connected to, when known.
    pub server: Option<SocketAddr>,
    /// The server name the client asked for in the TLS handshake.
    pub sni: Option<&'a str>,
    /// The negotiated TLS version, `TLSv1.3` or `TLSv1.2`; unknown while the handshake runs.
    pub tls_version: Option<&'a str>,
    /// The HTTP request, absent on `tls` endpoints (which decide per connection).
    pub http: Option<HttpRequest<'a>>,
}

/// The parts of an HTTP request that rules look at.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The host the client addressed (`Host` / `:authority`), possibly with a port.
    pub host: Option<&'a str>,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers, for `req.headers` in expressions.
    pub headers: Option<&'a http::HeaderMap>,
}

impl Request<'_> {
    /// The host rules match on: the HTTP host, else the SNI.
    pub fn host(&self) -> Option<&str> {
        self.http.as_ref().and_then(|http| http.host).or(self.sni)
    }

    /// The path rules match on, absent on tls endpoints.
    pub(crate) fn path(&self) -> Option<&str> {
        self.http.as_ref().map(|http| http.path)
    }
}

/// A client that presented a certificate the endpoint's CAs verified.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// What the certificate says.
    pub identity: &'a ClientIdentity,
    /// The configured CA the certificate chains to, for `issuer = "file.pem"`.
    pub ca: Option<&'a CaCertificate>,
}
