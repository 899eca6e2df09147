//! `EdgeSession`: the edge's side, the HTTP/2 client that opens one stream per public connection.

use std::sync::Arc;

use bytes::Bytes;
use h2::client::{self, SendRequest};
use http::{Method, Request, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::{
    CONTROL_URI, End, HandshakeError, MAX_FRAME, OpenError, STREAM_URI, SessionError, Status,
    exchange_hello, heartbeat, within_timeout,
};
use crate::control::{EdgeControl, Hello};
use crate::header::StreamHeader;
use crate::settings::SessionSettings;
use crate::stream::TunnelStream;

/// The edge's side of a session with one agent.
#[derive(Debug)]
pub struct EdgeSession {
    opener: StreamOpener,
    control: EdgeControl,
    peer: Hello,
}

/// Opens streams on a session; cheap to clone, one per public connection's task.
#[derive(Debug, Clone)]
pub struct StreamOpener {
    send: SendRequest<Bytes>,
    status: Status,
}

impl EdgeSession {
    /// Runs the edge's side over `io`, a connection the agent dialled (TLS with ALPN
    /// [`crate::ALPN`] in production): the HTTP/2 client preface, the control stream and
    /// the hello exchange, within `settings.handshake_timeout`. A driver task then runs the
    /// connection and its heartbeat until the session ends.
    pub async fn handshake<T>(
        io: T,
        settings: &SessionSettings,
    ) -> Result<EdgeSession, HandshakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        within_timeout(settings, handshake(io, settings)).await
    }

    /// Opens a stream for one public connection; see [`StreamOpener::open_stream`].
    pub async fn open_stream(&self, header: &StreamHeader) -> Result<TunnelStream, OpenError> {
        self.opener.open_stream(header).await
    }

    /// A handle that opens streams, for the tasks serving public connections.
    pub fn opener(&self) -> StreamOpener {
        self.opener.clone()
    }

    /// The control channel: the agent's registrations in, the edge's answers out.
    pub fn control(&mut self) -> &mut EdgeControl {
        &mut self.control
    }

    /// The agent's hello.
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// Waits for the session to end: `Ok` for a clean close, `PeerSilent` for a dead agent.
    pub async fn closed(&self) -> Result<(), SessionError> {
        self.opener.closed().await
    }

    /// The stream opener and the control channel, to use from different tasks.
    pub fn into_parts(self) -> (StreamOpener, EdgeControl) {
        (self.opener, self.control)
    }
}

impl StreamOpener {
    /// Opens a stream carrying `header`, waiting while the agent's stream cap is reached.
    /// Returns as soon as the stream is open, without waiting for the agent's answer, so
    /// the client's first bytes go out at once; an agent's refusal surfaces on the first
    /// read as `ConnectionRefused`. Cancel-safe: dropping the future withdraws the stream.
    pub async fn open_stream(&self, header: &StreamHeader) -> Result<TunnelStream, OpenError> {
        let mut request = request(STREAM_URI);
        *request.headers_mut() = header.to_headers()?;
        Ok(self.open(request).await?)
    }

    async fn open(&self, request: Request<()>) -> Result<TunnelStream, SessionError> {
        // The driver publishes the end before it drops the connection: in between, h2 would
        // still take a stream that can never be served.
        if let Some(ended) = self.status.ended() {
            return Err(ended);
        }
        let explain = |error| self.status.explain(error);
        let mut send = self.send.clone().ready().await.map_err(explain)?;
        let (response, body) = send.send_request(request, false).map_err(explain)?;
        // Over the cap h2 queues the stream instead of sending it; `ready` on the handle that
        // queued it waits until it is really open (another stream ended).
        send.ready().await.map_err(explain)?;
        Ok(TunnelStream::edge(response, body))
    }

    /// Waits for the session to end.
    pub async fn closed(&self) -> Result<(), SessionError> {
        self.status.closed().await
    }
}

async fn handshake<T>(io: T, settings: &SessionSettings) -> Result<EdgeSession, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = client::Builder::new()
        .enable_push(false)
        // Per-stream flow control only: see `SessionSettings::connection_window`.
        .initial_window_size(settings.effective_stream_window())
        .max_frame_size(MAX_FRAME)
        .initial_connection_window_size(settings.connection_window())
        // Until the agent's SETTINGS arrive, assume its cap is ours (+1 for control).
        .initial_max_send_streams(settings.max_concurrent_streams as usize + 1)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(HandshakeError::Http2)?;
    let (ended, status) = Status::new();
    tokio::spawn(drive(connection, settings.clone(), ended));
    let opener = StreamOpener { send, status };
    let stream = opener.open(request(CONTROL_URI)).await?;
    let mut control = EdgeControl::new(stream, settings.max_control_message);
    let peer = exchange_hello(&mut control).await?;
    Ok(EdgeSession {
        opener,
        control,
        peer,
    })
}

/// A `POST` to `uri`, one of the two constant URIs.
fn request(uri: &'static str) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static(uri);
    request
}

/// Runs the connection until it closes, fails or the agent stops answering PINGs, then
/// publishes how it ended (before dropping the connection, so the streams' errors can be
/// explained by it).
async fn drive<T>(
    connection: client::Connection<T, Bytes>,
    settings: SessionSettings,
    ended: watch::Sender<End>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = connection;
    let pings = connection.ping_pong();
    let end = tokio::select! {
        result = &mut connection => result.map_err(|error| SessionError::Http2(Arc::new(error))),
        silent = heartbeat(pings, settings.heartbeat_interval, settings.heartbeat_tolerance) => Err(silent),
    };
    if let Err(error) = &end {
        tracing::debug!(%error, "tunnel session (edge side) ended");
    }
    ended.send_replace(Some(end));
    drop(connection);
}
