//! `SessionSettings`: the stream cap, flow-control windows, heartbeat and control limits of a session.

use std::time::Duration;

/// The limits one side of a session applies. Both sides take the same struct; each side's
/// values govern what it *receives* (HTTP/2 SETTINGS are advertised by the receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Data streams the agent lets the edge have open at once (SETTINGS_MAX_CONCURRENT_STREAMS,
    /// plus one for the control stream). The edge's `open_stream` waits while the cap is
    /// reached. Default 10,000: one agent fronting a busy service, at a few KiB of state each.
    pub max_concurrent_streams: u32,
    /// Bytes a sender may have in flight on one stream before the receiving reader consumes
    /// them (SETTINGS_INITIAL_WINDOW_SIZE). A reader that stops holds at most this much.
    /// Default 256 KiB: about 2 ms of a 1 Gbit/s link, 25 ms at 80 Mbit/s.
    pub stream_window: u32,
    /// Bytes in flight over all streams of the session (the connection window). Stalled
    /// readers keep their unread bytes charged here, so `connection_window / stream_window`
    /// stalled streams (64 by default) stop the whole session: raise it for many slow
    /// clients. Default 16 MiB: the most one session buffers on the receiving side.
    pub connection_window: u32,
    /// Time between the PINGs each side sends. Default 5 s.
    pub heartbeat_interval: Duration,
    /// How long a PING may go unanswered before the session ends with
    /// [`crate::SessionError::PeerSilent`]; a dead peer is noticed within
    /// `heartbeat_interval + heartbeat_tolerance` (20 s by default). It must cover the time
    /// to drain a full connection window over the slowest link, since a PING waits behind the
    /// DATA already in the socket. Default 15 s.
    pub heartbeat_tolerance: Duration,
    /// How long the HTTP/2 preface and the control stream's hello exchange may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// The largest control message, JSON bytes, either way. Default 1 MiB: a registration
    /// carrying PEM bundles of 10 CAs and CRLs fits many times over.
    pub max_control_message: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            max_concurrent_streams: 10_000,
            stream_window: 256 * 1024,
            connection_window: 16 * 1024 * 1024,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_tolerance: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            max_control_message: 1024 * 1024,
        }
    }
}
