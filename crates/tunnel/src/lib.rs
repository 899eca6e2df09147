//! The edge ⇄ agent wire protocol: sessions over HTTP/2, stream headers, the control channel, heartbeats.
//!
//! The agent dials out to the edge and keeps one connection open; the edge sends each public
//! client connection to the agent as one stream over it. This crate is only that wire layer,
//! over any `AsyncRead + AsyncWrite + Unpin + Send` transport. The edge and agent crates put
//! TLS 1.3 with mutual authentication under it (ALPN [`ALPN`]) and the gateway and proxy
//! above it. It imports none of gateway, proxy or telemetry.
//!
//! # Design notes
//!
//! - **HTTP/2 with the roles reversed, as cloudflared does.** The agent dialled the
//!   connection but is the HTTP/2 *server* ([`AgentSession`], `h2::server`); the edge is the
//!   *client* ([`EdgeSession`], `h2::client`) and opens one request stream per public
//!   connection. HTTP/2 (the `h2` crate) gives per-stream flow control with small windows,
//!   backpressure on opening streams (SETTINGS_MAX_CONCURRENT_STREAMS: the edge waits in
//!   `SendRequest::ready`), PING for heartbeats and GOAWAY for a clean shutdown. yamux was
//!   the alternative: its 256 KiB minimum window per stream and its weak backpressure on
//!   opening streams fit thousands of streams badly.
//! - **A stream is a `POST https://moat-tunnel/stream`** whose headers carry the
//!   [`StreamHeader`] (`moat-tunnel-*` names: endpoint, client and server address, SNI,
//!   where TLS ended, the verified client's certificate chain). Decoding is strict: every
//!   missing, repeated, malformed or unknown field is a typed [`HeaderError`] naming it.
//!   The agent believes the header only because it arrives over its own authenticated
//!   connection to the edge; whatever a public client sends is the stream's payload and can
//!   never become a header. The agent answers 200 at once, or refuses the stream (400 with
//!   the reason in `moat-tunnel-refusal`) when the header is malformed. The edge does not
//!   wait for that answer before writing, so opening a stream costs no round trip; a
//!   refusal shows on its first read.
//! - **Bytes** flow as the request body (edge → agent) and the response body (agent →
//!   edge): [`TunnelStream`] is tokio `AsyncRead + AsyncWrite`. A write waits for window
//!   (reserve, then send); a read gives the window back only once the caller has the bytes,
//!   so a client that stops reading stalls only its own stream. `shutdown` is END_STREAM
//!   (half-close: the other direction goes on); a reset is an `io::Error`
//!   (`ConnectionReset`); dropping a writer that was not shut down resets the stream.
//! - **The control channel** is the session's first stream (`POST .../control`), opened by
//!   the edge during the handshake. Messages are serde JSON ([`AgentMessage`],
//!   [`EdgeMessage`]), each behind a 4-byte length prefix (tokio-util's
//!   `LengthDelimitedCodec`), at most `max_control_message` (1 MiB) either way: a length
//!   prefix lets the receiver refuse an over-size message ([`ControlError::TooLarge`])
//!   before buffering it, and needs no delimiter escaping. Both sides send a [`Hello`] with
//!   [`PROTOCOL_VERSION`] first; a mismatch fails the handshake. Endpoint descriptions
//!   ([`EndpointSpec`]) are generic (hostname, kind, where TLS ends, pool flag, PEM blobs,
//!   rules as JSON): the edge crate interprets them.
//! - **Heartbeats**: each side PINGs every `heartbeat_interval` (5 s) and ends the session
//!   with [`SessionError::PeerSilent`] when a PONG takes longer than `heartbeat_tolerance`
//!   (15 s), so the edge withdraws a dead agent's endpoints and the agent reconnects. The
//!   driver task (one per session) drops the transport when the session ends.
//! - **Shutdown**: [`AgentSession::shutdown`] (or dropping its acceptor) sends GOAWAY; open
//!   streams run to their end, then both sides close and the session ends `Ok`. The agent's
//!   socket lingers 2 s so that the edge's own closing frames do not meet a TCP reset.
//! - **Flow control is per stream only**, in both directions and on both sides. Unread bytes
//!   count against the connection window too, so a connection window smaller than the
//!   streams' windows together lets stalled readers stop every stream: a 16 MiB one did with
//!   64 stalled streams of 256 KiB. Each side therefore advertises HTTP/2's largest
//!   connection window (2^31 − 1 bytes) and keeps `stream_window × (streams + 1)` within it
//!   (lowering the stream window if need be), so a reader that stops holds its own stream's
//!   window and nothing else. The memory bound is per stream: at most one stream window of
//!   unread bytes per open stream: 192 KiB × 10,001 ≈ 1.83 GiB per session and side, reached
//!   only when every one of 10,000 streams' readers has stalled.
//! - **Limits** ([`SessionSettings`]): 10,000 concurrent data streams (the control stream
//!   is extra) and a 192 KiB stream window, the largest multiple of 64 KiB at which the
//!   windows of 10,001 streams fit in one connection window.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod header;
mod session;
mod settings;
mod stream;

pub use control::{
    AgentControl, AgentMessage, ControlChannel, ControlError, ControlReceiver, ControlSender,
    EdgeControl, EdgeMessage, EndpointKind, EndpointSpec, Hello, PROTOCOL_VERSION, TerminateAt,
};
pub use header::{ClientChain, HeaderError, StreamHeader};
pub use session::{
    AgentSession, EdgeSession, HandshakeError, IncomingStreams, OpenError, SessionError,
    StreamOpener,
};
pub use settings::SessionSettings;
pub use stream::{TunnelReader, TunnelStream, TunnelWriter};

/// The ALPN protocol id the edge and agent negotiate on their TLS connection.
pub const ALPN: &[u8] = b"moat-tunnel/1";
