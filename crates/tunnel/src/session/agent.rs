//! `AgentSession`: the agent's side, the HTTP/2 server on the connection it dialled, accepting the edge's streams.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::{self, SendResponse};
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};

use super::{
    CONTROL_PATH, End, HandshakeError, MAX_FRAME, STREAM_PATH, SessionError, Status,
    exchange_hello, heartbeat, within_timeout,
};
use crate::control::{AgentControl, Hello};
use crate::header::StreamHeader;
use crate::settings::SessionSettings;
use crate::stream::{REFUSAL, TunnelStream};

/// The largest header block the agent takes: a stream header with a chain of
/// `MAX_CHAIN_CERTIFICATES` (10) base64 certificates of a few KiB each fits with room.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// How long the agent keeps the socket after its graceful shutdown completes: enough for
/// the edge's last frames over any working path (RTTs are well under a second).
const LINGER: Duration = Duration::from_secs(2);

/// The agent's side of a session with one edge.
#[derive(Debug)]
pub struct AgentSession {
    incoming: IncomingStreams,
    control: AgentControl,
    peer: Hello,
}

/// The streams the edge opens, in order; the accepting half of an [`AgentSession`].
/// Dropping it (or calling [`IncomingStreams::shutdown`]) sends GOAWAY: open streams
/// finish, new ones are refused.
#[derive(Debug)]
pub struct IncomingStreams {
    receiver: mpsc::UnboundedReceiver<Incoming>,
    status: Status,
    shutdown: Arc<Notify>,
}

/// What the driver hands over. Unbounded: the stream cap already bounds how many streams
/// can be waiting (accepted streams stay open until their handler ends them).
#[derive(Debug)]
enum Incoming {
    Control(TunnelStream),
    Stream(StreamHeader, TunnelStream),
}

impl AgentSession {
    /// Runs the agent's side over `io`, the connection it dialled to the edge (TLS with
    /// ALPN [`crate::ALPN`] in production): the HTTP/2 server handshake, the edge's control
    /// stream and the hello exchange, within `settings.handshake_timeout`. A driver task
    /// then accepts streams and runs the heartbeat until the session ends.
    pub async fn handshake<T>(
        io: T,
        settings: &SessionSettings,
    ) -> Result<AgentSession, HandshakeError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        within_timeout(settings, handshake(io, settings)).await
    }

    /// The next stream the edge opens, with its header; `None` once the session has ended
    /// (see [`AgentSession::closed`] for why).
    pub async fn accept(&mut self) -> Option<(StreamHeader, TunnelStream)> {
        self.incoming.accept().await
    }

    /// The control channel: registrations out, the edge's answers in.
    pub fn control(&mut self) -> &mut AgentControl {
        &mut self.control
    }

    /// The edge's hello.
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// Waits for the session to end: `Ok` for a clean close, `PeerSilent` for a dead edge.
    pub async fn closed(&self) -> Result<(), SessionError> {
        self.incoming.closed().await
    }

    /// Sends GOAWAY; see [`IncomingStreams::shutdown`].
    pub fn shutdown(&self) {
        self.incoming.shutdown();
    }

    /// The incoming streams and the control channel, to use from different tasks.
    pub fn into_parts(self) -> (IncomingStreams, AgentControl) {
        (self.incoming, self.control)
    }
}

impl IncomingStreams {
    /// The next stream the edge opens, with its header; `None` once the session has ended.
    /// A stream whose header is malformed never gets here: the edge's reader sees it
    /// refused with the reason.
    pub async fn accept(&mut self) -> Option<(StreamHeader, TunnelStream)> {
        loop {
            match self.receiver.recv().await? {
                Incoming::Stream(header, stream) => return Some((header, stream)),
                // The driver refuses a second control stream; the first one the handshake took.
                Incoming::Control(_) => continue,
            }
        }
    }

    /// Waits for the session to end.
    pub async fn closed(&self) -> Result<(), SessionError> {
        self.status.closed().await
    }

    /// Sends GOAWAY: the edge opens no new streams, open ones run to their end, then the
    /// session closes cleanly.
    pub fn shutdown(&self) {
        self.shutdown.notify_one();
    }
}

async fn handshake<T>(io: T, settings: &SessionSettings) -> Result<AgentSession, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = server::Builder::new()
        // Per-stream flow control only: see `SessionSettings::connection_window`.
        .initial_window_size(settings.effective_stream_window())
        .max_frame_size(MAX_FRAME)
        .initial_connection_window_size(settings.connection_window())
        // The control stream does not count against the data streams' cap.
        .max_concurrent_streams(settings.max_concurrent_streams.saturating_add(1))
        .max_header_list_size(MAX_HEADER_LIST)
        // Public clients that vanish at once make the edge reset streams the agent has not
        // accepted yet; h2's default of 20 such streams would end the session for everyone.
        .max_pending_accept_reset_streams(settings.max_concurrent_streams as usize)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(HandshakeError::Http2)?;
    let (ended, status) = Status::new();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let shutdown = Arc::new(Notify::new());
    tokio::spawn(drive(
        connection,
        settings.clone(),
        sender,
        Arc::clone(&shutdown),
        ended,
    ));
    let stream = match receiver.recv().await {
        Some(Incoming::Control(stream)) => stream,
        Some(Incoming::Stream(..)) => return Err(HandshakeError::NoControlStream),
        None => {
            return Err(status
                .closed()
                .await
                .err()
                .unwrap_or(SessionError::Closed)
                .into());
        }
    };
    let mut control = AgentControl::new(stream, settings.max_control_message);
    let peer = exchange_hello(&mut control).await?;
    Ok(AgentSession {
        incoming: IncomingStreams {
            receiver,
            status,
            shutdown,
        },
        control,
        peer,
    })
}

/// Accepts streams until the connection closes, fails or the edge stops answering PINGs,
/// then publishes how it ended (before dropping the connection, so the streams' errors can
/// be explained by it). Accepting is what drives an h2 server connection, so this loop
/// never waits on anything else.
async fn drive<T>(
    connection: server::Connection<T, Bytes>,
    settings: SessionSettings,
    incoming: mpsc::UnboundedSender<Incoming>,
    shutdown: Arc<Notify>,
    ended: watch::Sender<End>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = connection;
    let beat = heartbeat(
        connection.ping_pong(),
        settings.heartbeat_interval,
        settings.heartbeat_tolerance,
    );
    tokio::pin!(beat);
    let mut control_seen = false;
    let mut closing = false;
    let end = loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                None => break Ok(()),
                Some(Err(error)) if closing && hung_up(&error) => break Ok(()),
                Some(Err(error)) => break Err(SessionError::Http2(Arc::new(error))),
                Some(Ok((request, respond))) => route(request, respond, &mut control_seen, &incoming),
            },
            silent = &mut beat => break Err(silent),
            _ = shutdown.notified(), if !closing => {
                closing = true;
                connection.graceful_shutdown();
            }
            _ = incoming.closed(), if !closing => {
                closing = true;
                connection.graceful_shutdown();
            }
        }
    };
    if let Err(error) = &end {
        tracing::debug!(%error, "tunnel session (agent side) ended");
    }
    let linger = closing && end.is_ok();
    ended.send_replace(Some(end));
    if linger {
        // After our GOAWAY both sides close once the last stream ends; closing the socket
        // at once would answer the edge's own closing GOAWAY with a TCP reset, and the edge
        // would see a clean shutdown as "broken pipe". So the socket lingers, as nginx's
        // lingering_close does, until the edge has closed its side.
        tokio::time::sleep(LINGER).await;
    }
    drop(connection);
}

/// The peer closed its socket. After our GOAWAY that is how a shutdown ends, whoever closes
/// first: the edge closes as soon as it has no stream left, and a frame we were still
/// writing (a reset, the final GOAWAY) then meets a closed socket.
fn hung_up(error: &h2::Error) -> bool {
    error.get_io().is_some_and(|error| {
        matches!(
            error.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::UnexpectedEof
        )
    })
}

/// Answers one stream: 200 and hand it over, or a refusal naming the reason.
fn route(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    control_seen: &mut bool,
    incoming: &mpsc::UnboundedSender<Incoming>,
) {
    let (parts, body) = request.into_parts();
    let header = match parts.uri.path() {
        CONTROL_PATH if !*control_seen => {
            *control_seen = true;
            None
        }
        CONTROL_PATH => {
            return refuse(
                respond,
                StatusCode::CONFLICT,
                "the session already has a control stream",
            );
        }
        STREAM_PATH => match StreamHeader::from_headers(&parts.headers) {
            Ok(header) => Some(header),
            Err(error) => return refuse(respond, StatusCode::BAD_REQUEST, &error.to_string()),
        },
        _ => return refuse(respond, StatusCode::NOT_FOUND, "unknown tunnel stream kind"),
    };
    // An error here means the edge already reset the stream: nothing to hand over.
    let Ok(send) = respond.send_response(Response::new(()), false) else {
        return;
    };
    let stream = TunnelStream::agent(body, send);
    // A send error means nobody accepts any more (GOAWAY is under way); dropping the
    // stream resets it.
    let _ = incoming.send(match header {
        None => Incoming::Control(stream),
        Some(header) => Incoming::Stream(header, stream),
    });
}

fn refuse(mut respond: SendResponse<Bytes>, status: StatusCode, why: &str) {
    tracing::warn!(%status, reason = why, "tunnel stream refused");
    let mut response = Response::new(());
    *response.status_mut() = status;
    let reason = HeaderValue::from_str(why).unwrap_or(HeaderValue::from_static("refused"));
    response.headers_mut().insert(REFUSAL, reason);
    // An error means the edge already reset the stream.
    let _ = respond.send_response(response, true);
}
