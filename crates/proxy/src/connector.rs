//! How the proxies reach their upstream: a TCP connection today, a stream over an agent's
//! tunnel next. The HTTP proxy's connection pool and the TCP forwarder both dial through an
//! [`UpstreamConnector`], so neither cares what carries the bytes.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use moat_config::EndpointConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to the upstream, whatever carries it.
pub trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpstreamIo for T {}

/// One connection to the upstream. Boxed so that one proxy type serves every carrier; the
/// indirection costs a pointer call per read or write, against a system call behind it.
pub type UpstreamStream = Box<dyn UpstreamIo>;

/// A connection being opened.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = io::Result<UpstreamStream>> + Send + 'a>>;

/// Opens connections to one endpoint's upstream.
pub trait UpstreamConnector: Send + Sync + fmt::Debug {
    /// Opens a new connection; an error of kind `TimedOut` means the upstream did not accept
    /// it within the endpoint's `timeouts.upstream_connect`.
    fn connect(&self) -> Connecting<'_>;

    /// The upstream as logs name it, e.g. `127.0.0.1:8080`.
    fn address(&self) -> &str;
}

/// Dials `host:port` over TCP, resolving the name on each connection so that DNS changes are
/// followed, trying each address in turn within the connect timeout, with Nagle's algorithm
/// off (requests and responses are written whole).
#[derive(Debug, Clone)]
pub struct TcpConnector {
    address: String,
    timeout: Duration,
}

impl TcpConnector {
    /// Dials `host` (a name, an IPv4 or a bare IPv6 address) on `port`, giving up after `timeout`.
    pub fn new(host: &str, port: u16, timeout: Duration) -> TcpConnector {
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        TcpConnector { address, timeout }
    }

    /// Dials `endpoint`'s upstream within its `timeouts.upstream_connect`.
    pub fn to_upstream_of(endpoint: &EndpointConfig) -> Arc<dyn UpstreamConnector> {
        Arc::new(TcpConnector::new(
            &endpoint.upstream.host,
            endpoint.upstream.port,
            endpoint.timeouts.upstream_connect,
        ))
    }
}

impl UpstreamConnector for TcpConnector {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: no connection within {} ms",
                            self.address,
                            self.timeout.as_millis()
                        ),
                    )
                })??;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as UpstreamStream)
        })
    }

    fn address(&self) -> &str {
        &self.address
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn tcp_connector_reaches_its_upstream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = TcpConnector::new("127.0.0.1", port, Duration::from_secs(5));
        assert_eq!(connector.address(), format!("127.0.0.1:{port}"));
        let (connected, accepted) = tokio::join!(connector.connect(), listener.accept());
        let (mut connected, (mut accepted, _)) = (connected.unwrap(), accepted.unwrap());
        connected.write_all(b"ping").await.unwrap();
        let mut received = [0u8; 4];
        accepted.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"ping");
        assert_eq!(
            TcpConnector::new("::1", 8080, Duration::from_secs(1)).address(),
            "[::1]:8080"
        );
    }
}
