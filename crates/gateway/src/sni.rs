//! SNI routing: on a listen address shared by several endpoints, the ClientHello picks one.
//!
//! The chosen endpoint brings its server certificate, its CAs and its upstream.
//!
//! rustls chooses the client-certificate verifier per `ServerConfig`, not per certificate, so
//! the ClientHello is read with rustls's [`Acceptor`] first and the chosen endpoint's
//! `ServerConfig` then finishes the handshake.

use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::endpoint::LoadedEndpoint;

/// The endpoints served on one listen address, swapped as a whole on reload.
pub(crate) struct Routes {
    /// In configuration order.
    endpoints: Vec<Arc<LoadedEndpoint>>,
    /// A lone endpoint too requires its name (an edge); otherwise it takes every client.
    strict: bool,
}

/// Why no endpoint on the address serves a ClientHello.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoRoute {
    /// The SNI names no endpoint on this address.
    UnknownName(String),
    /// No SNI was sent and no endpoint is the `default`.
    NoServerName,
}

impl Routes {
    /// The endpoints of one address (at least one).
    pub(crate) fn new(endpoints: Vec<Arc<LoadedEndpoint>>, strict: bool) -> Routes {
        Routes { endpoints, strict }
    }

    /// The endpoints, in configuration order.
    pub(crate) fn endpoints(&self) -> &[Arc<LoadedEndpoint>] {
        &self.endpoints
    }

    /// Whether the SNI chose the endpoint (several share the address, or the routes are
    /// strict): a request's host must then be the endpoint's, or it is misdirected (421).
    pub(crate) fn sni_routed(&self) -> bool {
        self.strict || self.endpoints.len() > 1
    }

    /// The endpoint for a ClientHello's server name. An address with a single endpoint takes
    /// every client, whatever name it asked for (as before several endpoints could share an
    /// address); otherwise the name must match an endpoint's domain (exactly, or one label under
    /// a `*.` domain), and a client without SNI goes to the `default` endpoint.
    pub(crate) fn pick(&self, server_name: Option<&str>) -> Result<&Arc<LoadedEndpoint>, NoRoute> {
        let hosts: Vec<(&str, bool)> = self
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.config.domain.as_str(), endpoint.config.default))
            .collect();
        pick_index(&hosts, server_name, self.strict).map(|index| &self.endpoints[index])
    }
}

/// [`Routes::pick`] over `(domain, default)` pairs: the index of the chosen one.
fn pick_index(
    hosts: &[(&str, bool)],
    server_name: Option<&str>,
    strict: bool,
) -> Result<usize, NoRoute> {
    if hosts.len() == 1 && !strict {
        return Ok(0);
    }
    let Some(name) = server_name else {
        return hosts
            .iter()
            .position(|(_, default)| *default)
            .ok_or(NoRoute::NoServerName);
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let exact = hosts
        .iter()
        .position(|(domain, _)| domain.eq_ignore_ascii_case(&name));
    let wildcard = || {
        hosts.iter().position(|(domain, _)| {
            domain.starts_with("*.") && moat_config::domain_serves(domain, &name)
        })
    };
    exact.or_else(wildcard).ok_or(NoRoute::UnknownName(name))
}

/// Why the ClientHello could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientHelloError {
    /// The socket failed or closed first.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bytes were not a TLS ClientHello (rustls's alert is to be sent back).
    #[error("{0}")]
    Tls(rustls::Error),
    /// The ClientHello is larger than the 64 KiB rustls buffers for a handshake message (an
    /// oversized SNI or extensions), or the client sent more than a record of data behind it.
    #[error("the ClientHello and what came with it exceed the 64 KiB rustls buffers")]
    TooLarge,
}

/// The synchronous half of [`read_client_hello`]: rustls's [`Acceptor`] fed with the bytes as
/// they arrive, with no socket, so the shipped parsing is what the fuzz target `client_hello` runs.
#[derive(Default)]
pub struct ClientHelloReader {
    acceptor: Acceptor,
    /// The alert record rustls wants sent after [`ClientHelloError::Tls`].
    alert: Vec<u8>,
}

impl ClientHelloReader {
    /// A reader that has seen no bytes yet.
    pub fn new() -> ClientHelloReader {
        ClientHelloReader::default()
    }

    /// Takes the next bytes received (not empty: an empty read is the end of the stream).
    /// `Ok(None)` asks for more; `Ok(Some)` holds the ClientHello, with any bytes after it
    /// buffered for the handshake.
    pub fn feed(&mut self, mut received: &[u8]) -> Result<Option<Accepted>, ClientHelloError> {
        while !received.is_empty() {
            if self.read_tls(&mut received) {
                continue;
            }
            // rustls takes one record (16 KiB) until it has joined the records it holds into a
            // handshake message, then up to 64 KiB: let it, then read on.
            if self.accept()?.is_some() || !self.read_tls(&mut received) {
                return Err(ClientHelloError::TooLarge);
            }
        }
        self.accept()
    }

    /// Hands rustls what it takes of `received`; false when it took nothing (its buffer is full).
    fn read_tls(&mut self, received: &mut &[u8]) -> bool {
        // Reading from a slice cannot fail; rustls refuses only when its buffer is full.
        self.acceptor.read_tls(received).is_ok_and(|read| read > 0)
    }

    /// Lets rustls process what it holds: the ClientHello once it is whole.
    fn accept(&mut self) -> Result<Option<Accepted>, ClientHelloError> {
        match self.acceptor.accept() {
            Ok(accepted) => Ok(accepted),
            Err((error, mut alert)) => {
                self.alert.clear();
                let _ = alert.write_all(&mut self.alert);
                Err(ClientHelloError::Tls(error))
            }
        }
    }

    /// The alert record to send the client after [`ClientHelloError::Tls`] (empty otherwise).
    pub fn take_alert(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.alert)
    }
}

/// The server name (SNI) of a ClientHello that arrives as `reads`, one slice per socket read,
/// then the end of the stream; `Ok(None)` when the ClientHello names no server.
pub fn client_hello_server_name<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<String>, ClientHelloError> {
    let mut reader = ClientHelloReader::new();
    for read in reads.into_iter().filter(|read| !read.is_empty()) {
        if let Some(accepted) = reader.feed(read)? {
            return Ok(accepted.client_hello().server_name().map(str::to_owned));
        }
    }
    Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
}

/// A ClientHello read whole: rustls's view of it, and every byte read from the client so far.
pub(crate) struct ReadHello {
    /// The parsed ClientHello; bytes after it stay buffered here for the handshake.
    pub(crate) accepted: Accepted,
    /// The bytes exactly as they arrived (the ClientHello and whatever followed it in the same
    /// reads), for a relay that hands the untouched handshake to the endpoint's real terminator.
    pub(crate) received: Vec<u8>,
}

/// Reads from `stream` until a whole ClientHello has arrived.
pub(crate) async fn read_client_hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<ReadHello, ClientHelloError> {
    let mut reader = ClientHelloReader::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut received = Vec::new();
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        received.extend_from_slice(&buffer[..read]);
        match reader.feed(&buffer[..read]) {
            Ok(Some(accepted)) => return Ok(ReadHello { accepted, received }),
            Ok(None) => continue,
            Err(error) => {
                let alert = reader.take_alert();
                if !alert.is_empty() {
                    let _ = stream.write_all(&alert).await;
                }
                return Err(error);
            }
        }
    }
}

/// A fatal `unrecognized_name` alert (RFC 6066 section 3) as an unencrypted TLS record: the
/// answer to a ClientHello whose SNI no endpoint serves. rustls offers no call to send an alert
/// of one's choosing before a configuration is picked, and the record is fixed: content type
/// alert (21), legacy version TLS 1.2, length 2, level fatal (2), description 112.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// Refuses a client no endpoint serves with `unrecognized_name`.
pub(crate) async fn refuse_unrecognized_name<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
    let _ = stream.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_endpoints_exactly_then_by_wildcard_and_no_name_picks_the_default() {
        let hosts = [
            ("app.example.com", false),
            ("*.example.com", false),
            ("api.internal", true),
        ];
        let table: [(Option<&str>, Result<usize, NoRoute>); 8] = [
            (Some("app.example.com"), Ok(0)),
            (Some("APP.Example.com."), Ok(0)),
            (Some("other.example.com"), Ok(1)),
            (Some("api.internal"), Ok(2)),
            (
                Some("example.com"),
                Err(NoRoute::UnknownName("example.com".into())),
            ),
            (
                Some("a.b.example.com"),
                Err(NoRoute::UnknownName("a.b.example.com".into())),
            ),
            (
                Some("elsewhere.test"),
                Err(NoRoute::UnknownName("elsewhere.test".into())),
            ),
            (None, Ok(2)),
        ];
        for (name, expected) in table {
            assert_eq!(pick_index(&hosts, name, false), expected, "{name:?}");
            assert_eq!(pick_index(&hosts, name, true), expected, "{name:?}");
        }
    }

    /// The first flight of a rustls client asking for `server_name`: its ClientHello record.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = server_name.to_owned().try_into().unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_server_name_is_read_whether_the_hello_arrives_whole_or_a_byte_at_a_time() {
        let hello = client_hello("app.example.com");
        let whole = client_hello_server_name([hello.as_slice()]).unwrap();
        assert_eq!(whole.as_deref(), Some("app.example.com"));
        let bytewise = client_hello_server_name(hello.chunks(1)).unwrap();
        assert_eq!(bytewise.as_deref(), Some("app.example.com"));
    }

    #[test]
    fn a_cut_hello_is_an_early_end_and_garbage_is_a_tls_error_with_an_alert() {
        let hello = client_hello("app.example.com");
        let cut = client_hello_server_name([&hello[..hello.len() - 1]]).unwrap_err();
        assert!(
            matches!(&cut, ClientHelloError::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof),
            "{cut:?}"
        );
        let mut reader = ClientHelloReader::new();
        let garbage = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
        assert!(matches!(
            reader.feed(garbage),
            Err(ClientHelloError::Tls(_))
        ));
        // An alert record: content type 21, then a TLS version.
        assert_eq!(reader.take_alert().first(), Some(&21));
    }

    #[test]
    fn without_a_default_no_name_is_refused_and_a_lone_endpoint_takes_everyone() {
        let two = [("a.test", false), ("b.test", false)];
        assert_eq!(pick_index(&two, None, false), Err(NoRoute::NoServerName));
        let one = [("a.test", false)];
        assert_eq!(pick_index(&one, Some("z.test"), false), Ok(0));
        assert_eq!(pick_index(&one, None, false), Ok(0));
    }

    #[test]
    fn strict_routes_refuse_other_names_even_with_a_lone_endpoint() {
        let one = [("*.tunnel.test", false)];
        assert_eq!(pick_index(&one, Some("app.tunnel.test"), true), Ok(0));
        assert_eq!(
            pick_index(&one, Some("z.test"), true),
            Err(NoRoute::UnknownName("z.test".into()))
        );
        assert_eq!(pick_index(&one, None, true), Err(NoRoute::NoServerName));
    }
}
