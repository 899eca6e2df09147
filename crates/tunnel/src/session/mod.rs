//! Sessions: one HTTP/2 connection between an edge and an agent, its driver task, heartbeat and end.

mod agent;
mod edge;

use std::sync::Arc;
use std::time::Duration;

use h2::{Ping, PingPong};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control::{
    AgentMessage, ControlChannel, ControlError, EdgeMessage, Hello, PROTOCOL_VERSION,
};
use crate::header::HeaderError;
use crate::settings::SessionSettings;

pub use agent::{AgentSession, IncomingStreams};
pub use edge::{EdgeSession, StreamOpener};

/// The largest DATA frame either side accepts: 64 KiB. With h2's default of 16 KiB, one 512 MiB
/// download cost the edge 2.8 s and the agent 1.7 s of CPU (114 MB/s through the tunnel); with
/// 64 KiB frames and 64 KiB copy buffers in the agent, 1.6 s and 0.9 s (242 MB/s). Measured with
/// curl on the release build, one run on this 2-core machine; issue 13's harness measures it properly.
pub(crate) const MAX_FRAME: u32 = 64 * 1024;

/// The control stream's request target. h2 wants an absolute URI; the authority names the
/// protocol, not a host. The agent tells the two kinds of stream apart by the path.
const CONTROL_URI: &str = "https://moat-tunnel/control";
const CONTROL_PATH: &str = "/control";
/// A data stream's request target.
const STREAM_URI: &str = "https://moat-tunnel/stream";
const STREAM_PATH: &str = "/stream";

/// Why a session ended (or why an operation failed because it did).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// A heartbeat PING went unanswered for `after`: the peer or the path to it is dead.
    /// The edge withdraws the agent's endpoints; the agent reconnects.
    #[error("the peer answered no heartbeat within {} ms", after.as_millis())]
    PeerSilent {
        /// How long the PING waited (the heartbeat tolerance).
        after: Duration,
    },
    /// The HTTP/2 connection failed: transport error, protocol error, or the peer's GOAWAY
    /// with an error code.
    #[error("tunnel connection failed: {0}")]
    Http2(#[source] Arc<h2::Error>),
    /// The session is over (its driver task is gone).
    #[error("the tunnel session has ended")]
    Closed,
}

/// Why a session could not be established.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The HTTP/2 preface or settings exchange failed.
    #[error("tunnel HTTP/2 handshake failed: {0}")]
    Http2(#[source] h2::Error),
    /// The handshake did not finish within `SessionSettings::handshake_timeout`.
    #[error("tunnel handshake did not finish within {} ms", after.as_millis())]
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The control channel failed during the hello exchange.
    #[error("tunnel hello: {0}")]
    Control(#[from] ControlError),
    /// The peer's first control message was not a hello.
    #[error("tunnel hello: the peer sent {got} first")]
    NotHello {
        /// The message type it sent.
        got: &'static str,
    },
    /// The peer closed the control channel before its hello.
    #[error("tunnel hello: the peer closed the control channel before its hello")]
    NoHello,
    /// The peer speaks another protocol version.
    #[error("tunnel hello: the peer speaks protocol version {theirs}, this side {ours}")]
    Version {
        /// This side's version.
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The edge's first stream was a data stream, not the control stream.
    #[error("tunnel handshake: the edge opened a data stream before the control stream")]
    NoControlStream,
    /// The session ended during the handshake.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Why the edge could not open a stream.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The stream header has a field the protocol cannot carry.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The session ended (or is ending).
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// How a session ended: `None` while it runs, then `Ok` for a clean close (GOAWAY without
/// error, or the peer closing after its last stream) or the error.
type End = Option<Result<(), SessionError>>;

/// The watch a session's handles keep on its driver task.
#[derive(Debug, Clone)]
struct Status(watch::Receiver<End>);

impl Status {
    fn new() -> (watch::Sender<End>, Status) {
        let (sender, receiver) = watch::channel(None);
        (sender, Status(receiver))
    }

    /// Waits for the session to end; a driver gone without a word counts as `Closed`.
    async fn closed(&self) -> Result<(), SessionError> {
        let mut receiver = self.0.clone();
        match receiver.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or(Err(SessionError::Closed)),
            Err(_) => Err(SessionError::Closed),
        }
    }

    /// Why the session has ended, if it has: `Closed` for a clean end.
    fn ended(&self) -> Option<SessionError> {
        match &*self.0.borrow() {
            Some(Err(ended)) => Some(ended.clone()),
            Some(Ok(())) => Some(SessionError::Closed),
            None => None,
        }
    }

    /// An h2 error seen by a handle, explained by the session's end when it has ended:
    /// `PeerSilent` says more than the "broken pipe" the streams see.
    fn explain(&self, error: h2::Error) -> SessionError {
        self.ended()
            .unwrap_or_else(|| SessionError::Http2(Arc::new(error)))
    }
}

/// Sends a PING every `interval` and waits up to `tolerance` for its PONG; returns
/// `PeerSilent` when one does not come. A failed PING means the connection failed, which
/// the connection itself reports, so the heartbeat then waits forever.
async fn heartbeat(
    pings: Option<PingPong>,
    interval: Duration,
    tolerance: Duration,
) -> SessionError {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        let sent = Instant::now();
        match tokio::time::timeout(tolerance, pings.ping(Ping::opaque())).await {
            Err(_) => return SessionError::PeerSilent { after: tolerance },
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(_pong)) => {}
        }
        tokio::time::sleep_until(sent + interval).await;
    }
}

/// Runs a handshake within `settings.handshake_timeout`.
async fn within_timeout<S>(
    settings: &SessionSettings,
    handshake: impl Future<Output = Result<S, HandshakeError>>,
) -> Result<S, HandshakeError> {
    let within = settings.handshake_timeout;
    tokio::time::timeout(within, handshake)
        .await
        .map_err(|_| HandshakeError::TimedOut { after: within })?
}

/// A control message that can be a hello.
trait HelloMessage: Serialize + DeserializeOwned {
    fn hello(hello: Hello) -> Self;
    /// The hello, or the name of the message type it is instead.
    fn into_hello(self) -> Result<Hello, &'static str>;
}

impl HelloMessage for AgentMessage {
    fn hello(hello: Hello) -> Self {
        AgentMessage::Hello(hello)
    }

    fn into_hello(self) -> Result<Hello, &'static str> {
        match self {
            AgentMessage::Hello(hello) => Ok(hello),
            AgentMessage::Register { .. } => Err("register"),
            AgentMessage::Remove { .. } => Err("remove"),
        }
    }
}

impl HelloMessage for EdgeMessage {
    fn hello(hello: Hello) -> Self {
        EdgeMessage::Hello(hello)
    }

    fn into_hello(self) -> Result<Hello, &'static str> {
        match self {
            EdgeMessage::Hello(hello) => Ok(hello),
            EdgeMessage::Registered { .. } => Err("registered"),
            EdgeMessage::Refused { .. } => Err("refused"),
            EdgeMessage::Withdrawn { .. } => Err("withdrawn"),
        }
    }
}

/// Both sides send their hello at once, then read the peer's: one round trip, no ordering
/// to agree on. Returns the peer's hello.
async fn exchange_hello<Out: HelloMessage, In: HelloMessage>(
    control: &mut ControlChannel<Out, In>,
) -> Result<Hello, HandshakeError> {
    control.send(&Out::hello(Hello::ours())).await?;
    let theirs = control
        .recv()
        .await?
        .ok_or(HandshakeError::NoHello)?
        .into_hello()
        .map_err(|got| HandshakeError::NotHello { got })?;
    if theirs.version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version {
            ours: PROTOCOL_VERSION,
            theirs: theirs.version,
        });
    }
    Ok(theirs)
}
