//! An edge's agent address (`host:port`) and the TLS server name its certificate must carry.

use rustls_pki_types::ServerName;

use super::LinkError;
use crate::token::check_edge_address;

/// `host:port` of an edge's agent listener, checked, with its host as the name the edge's
/// certificate is verified for (a DNS name, or an IP address matched against IP SANs).
#[derive(Debug, Clone)]
pub(crate) struct EdgeAddress {
    text: String,
    server_name: ServerName<'static>,
    /// One of the addresses the host resolves to, when the agent keeps a session to each.
    at: Option<std::net::SocketAddr>,
}

impl EdgeAddress {
    /// Reads `host:port`; an IPv6 host is in brackets (`[::1]:4443`).
    pub(crate) fn parse(address: &str) -> Result<EdgeAddress, LinkError> {
        let bad = |problem: &str| LinkError::BadAddress {
            address: address.to_owned(),
            problem: problem.to_owned(),
        };
        check_edge_address(address).map_err(bad)?;
        let (host, _port) = address.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| bad("has a host that is not a valid DNS name or IP address"))?;
        Ok(EdgeAddress {
            text: address.to_owned(),
            server_name,
            at: None,
        })
    }

    /// The same edge, reached at `at` (one of the addresses its host resolves to); its
    /// certificate is still verified for the host.
    pub(crate) fn reached_at(self, at: Option<std::net::SocketAddr>) -> EdgeAddress {
        EdgeAddress { at, ..self }
    }

    /// The socket address to connect to, if one was chosen.
    pub(crate) fn at(&self) -> Option<std::net::SocketAddr> {
        self.at
    }

    /// The address as given, for connecting and for messages.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The name the edge's certificate must be valid for.
    pub(crate) fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }
}
