//! `tls` endpoints: the decrypted byte stream of an accepted client, forwarded to the upstream
//! its connector dials (TCP today).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use moat_config::EndpointConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::connector::{TcpConnector, UpstreamConnector};
use crate::relay::copy_both_ways;

/// Copy buffer per direction while bytes move: one full TLS record (16 KiB of plaintext), so each
/// read from or write to the TLS side moves a whole record. tokio's default (8 KiB) needs twice
/// the system calls for a stream; measured with bench/run.sh (scenario 6).
const COPY_BUFFER_BYTES: usize = 16 * 1024;

/// Forwards connections of one `tls` endpoint to its upstream.
#[derive(Debug)]
pub struct TcpForwarder {
    /// Opens each connection to the upstream.
    connector: Arc<dyn UpstreamConnector>,
    /// Time allowed to open the upstream connection (for the log line when it runs out).
    connect_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    idle_timeout: Duration,
}

/// How a forwarded connection went, for the connection's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOutcome {
    /// Bytes from the client to the upstream.
    pub to_upstream: u64,
    /// Bytes from the upstream to the client.
    pub to_client: u64,
    /// Why it ended.
    pub end: ForwardEnd,
}

/// Why a forwarded connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardEnd {
    /// Both sides closed their direction.
    Closed,
    /// One side failed or reset the connection (the I/O error's description).
    Failed(String),
    /// Neither side sent anything for the idle timeout.
    Idle,
    /// The upstream could not be reached within the connect timeout.
    UpstreamUnreachable,
}

impl TcpForwarder {
    /// The forwarder for `endpoint`, dialing its upstream (a TCP address) over TCP.
    pub fn new(endpoint: &EndpointConfig) -> TcpForwarder {
        TcpForwarder::with_connector(endpoint, TcpConnector::to_upstream_of(endpoint))
    }

    /// The forwarder for `endpoint`, reaching its upstream through `connector`.
    pub fn with_connector(
        endpoint: &EndpointConfig,
        connector: Arc<dyn UpstreamConnector>,
    ) -> TcpForwarder {
        TcpForwarder {
            connector,
            connect_timeout: endpoint.timeouts.upstream_connect,
            idle_timeout: endpoint.timeouts.idle,
        }
    }

    /// Connects to the upstream and copies bytes both ways until both directions are closed;
    /// an end of stream on one side is passed on as a half-close (TCP FIN or TLS close_notify)
    /// so request/response protocols that signal "done" by closing keep working.
    pub async fn forward<IO>(&self, client: IO) -> ForwardOutcome
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.forward_with_preamble(client, &[]).await
    }

    /// Like [`TcpForwarder::forward`], first sending `preamble` (a PROXY protocol header) to the
    /// upstream so that it learns who connected before any of the client's bytes.
    pub async fn forward_with_preamble<IO>(&self, mut client: IO, preamble: &[u8]) -> ForwardOutcome
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let upstream_address = self.connector.address();
        let mut upstream = match self.connector.connect().await {
            Ok(stream) => stream,
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                tracing::warn!(
                    upstream = %upstream_address,
                    timeout_ms = self.connect_timeout.as_millis() as u64,
                    "the upstream did not accept the connection in time"
                );
                close_unread(&mut client).await;
                return ForwardOutcome::unreachable();
            }
            Err(error) => {
                tracing::warn!(upstream = %upstream_address, %error, "cannot connect to the upstream");
                close_unread(&mut client).await;
                return ForwardOutcome::unreachable();
            }
        };
        if !preamble.is_empty()
            && let Err(error) = upstream.write_all(preamble).await
        {
            tracing::warn!(upstream = %upstream_address, %error, "cannot send the PROXY protocol header to the upstream");
            let _ = client.shutdown().await;
            return ForwardOutcome {
                to_upstream: 0,
                to_client: 0,
                end: ForwardEnd::Failed(error.to_string()),
            };
        }

        let started = Instant::now();
        let last_activity = Arc::new(AtomicU64::new(0));
        let mut client = Watched::new(client, started, Arc::clone(&last_activity));
        let mut upstream = Watched::new(upstream, started, Arc::clone(&last_activity));
        let end = {
            let copy = copy_both_ways(&mut client, &mut upstream, COPY_BUFFER_BYTES);
            tokio::pin!(copy);
            loop {
                let idle_since = Duration::from_millis(last_activity.load(Ordering::Relaxed));
                let deadline =
                    tokio::time::Instant::from_std(started + idle_since + self.idle_timeout);
                tokio::select! {
                    result = &mut copy => break match result {
                        Ok(_) => ForwardEnd::Closed,
                        Err(error) => ForwardEnd::Failed(error.to_string()),
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        let idle_since = Duration::from_millis(last_activity.load(Ordering::Relaxed));
                        if started.elapsed() >= idle_since + self.idle_timeout {
                            break ForwardEnd::Idle;
                        }
                    }
                }
            }
        };
        ForwardOutcome {
            to_upstream: client.bytes_read,
            to_client: upstream.bytes_read,
            end,
        }
    }
}

/// Closes a client connection that will never be forwarded: close_notify and FIN, then what the
/// client already sent is read and dropped for a moment. Closing with unread bytes makes the
/// kernel send RST, and a client that gets RST reports "broken pipe" instead of a clean close.
async fn close_unread<IO: AsyncRead + AsyncWrite + Unpin>(client: &mut IO) {
    use tokio::io::AsyncReadExt as _;
    let _ = client.shutdown().await;
    // On the heap: a buffer in an async fn is part of its future, and so of every
    // connection's state, whether or not it ever comes here (4 KiB per relayed connection).
    let mut discard = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(read) = client.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

impl ForwardOutcome {
    fn unreachable() -> ForwardOutcome {
        ForwardOutcome {
            to_upstream: 0,
            to_client: 0,
            end: ForwardEnd::UpstreamUnreachable,
        }
    }
}

/// A stream that records when bytes last moved, so an idle connection can be closed, and how
/// many it delivered, so the log line has the counts even when the copy ends in an error.
struct Watched<S> {
    inner: S,
    /// Bytes read from this side (and so forwarded to the other).
    bytes_read: u64,
    started: Instant,
    /// Milliseconds since `started` of the last read or write with bytes, shared by both sides.
    last_activity: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn new(inner: S, started: Instant, last_activity: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            bytes_read: 0,
            started,
            last_activity,
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity.fetch_max(now, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.bytes_read += read as u64;
            self.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
