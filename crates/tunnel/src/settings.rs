//! `SessionSettings`: the stream cap, flow-control windows, heartbeat and control limits of a session.

use std::time::Duration;

/// HTTP/2's largest flow-control window, 2^31 − 1 bytes (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The limits one side of a session applies. Both sides take the same struct; each side's
/// values govern what it *receives* (HTTP/2 SETTINGS are advertised by the receiver).
///
/// Flow control is per stream only. A reader that stops holds its stream's unread bytes,
/// at most one `stream_window`, and those bytes are also charged to the session's
/// connection window until read. So that stalled streams can never use up the connection
/// window and stop the streams that still move, each side advertises the largest
/// connection window HTTP/2 allows ([`SessionSettings::connection_window`], 2^31 − 1) and
/// keeps the stream windows of all open streams within it
/// ([`SessionSettings::effective_stream_window`]). The connection window then never
/// limits anything; what a side buffers is bounded per stream: at most `stream_window`
/// unread bytes per open stream, `stream_window × (max_concurrent_streams + 1)` per session
/// (192 KiB × 10,001 ≈ 1.83 GiB by default, if every stream's reader stalls at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Data streams the agent lets the edge have open at once (SETTINGS_MAX_CONCURRENT_STREAMS,
    /// plus one for the control stream). The edge's `open_stream` waits while the cap is
    /// reached. Default 10,000: one agent fronting a busy service, at a few KiB of state
    /// each, as many as the gateway's default `max_connections`.
    pub max_concurrent_streams: u32,
    /// Bytes a sender may have in flight on one stream before the receiving reader consumes
    /// them (SETTINGS_INITIAL_WINDOW_SIZE): what a reader that stops holds, and what bounds
    /// one stream's throughput to `stream_window / RTT`. Lowered to
    /// `(2^31 − 1) / (max_concurrent_streams + 1)` when the windows of all streams would not
    /// fit in one connection window (see [`SessionSettings::effective_stream_window`]).
    /// Default 192 KiB, the largest multiple of 64 KiB at which 10,001 streams fit
    /// (10,001 × 192 KiB = 1.97 × 10^9 ≤ 2^31 − 1): about 1.5 ms of a 1 Gbit/s link,
    /// 31 Mbit/s per stream over a 50 ms round trip.
    pub stream_window: u32,
    /// Time between the PINGs each side sends. Default 5 s.
    pub heartbeat_interval: Duration,
    /// How long a PING may go unanswered before the session ends with
    /// [`crate::SessionError::PeerSilent`]; a dead peer is noticed within
    /// `heartbeat_interval + heartbeat_tolerance` (20 s by default). It must cover the time
    /// to drain the DATA already queued in the sockets over the slowest link, since a PING
    /// waits behind it: the TCP buffers, a few MiB with Linux's autotuning (about 8 s for
    /// 10 MiB at 10 Mbit/s). Default 15 s.
    pub heartbeat_tolerance: Duration,
    /// How long the HTTP/2 preface and the control stream's hello exchange may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// The largest control message, JSON bytes, either way. Default 1 MiB: a registration
    /// carrying PEM bundles of 10 CAs and CRLs fits many times over.
    pub max_control_message: usize,
}

impl SessionSettings {
    /// The connection window each side advertises: always HTTP/2's largest, 2^31 − 1 bytes.
    ///
    /// It is not a setting because no other value helps. Below the sum of the open
    /// streams' windows, stalled readers can fill it and stop every stream of the session
    /// (with a 16 MiB window, 64 stalled streams of 256 KiB did). Above that sum, it limits
    /// nothing, since a sender can never have more in flight than its streams' windows.
    /// Using the maximum, rather than exactly `stream_window × (streams + 1)`, also keeps it
    /// out of the way when the two sides' settings differ (the edge receives on as many
    /// streams as the *agent's* cap allows). Memory is bounded per stream instead; see
    /// [`SessionSettings`].
    pub fn connection_window(&self) -> u32 {
        MAX_WINDOW
    }

    /// The stream window this side advertises: `stream_window`, lowered when needed so that
    /// the windows of all streams (`max_concurrent_streams` data streams and the control
    /// stream) fit in the connection window, 2^31 − 1 bytes. Then even with every other
    /// stream's reader stalled, a stream has its full window.
    ///
    /// The window gives way rather than the stream cap: the cap is a promise of capacity
    /// (how many clients an agent serves at once), the window only a throughput tuning.
    /// A window of 0 would stop every stream, so it is at least 1 byte. The edge receives on
    /// as many streams as the agent's cap allows, so the guarantee for its direction needs
    /// the edge's `max_concurrent_streams` to be at least the agent's (the same settings on
    /// both sides, as by default).
    pub fn effective_stream_window(&self) -> u32 {
        let streams = self.max_concurrent_streams.saturating_add(1);
        self.stream_window.clamp(1, (MAX_WINDOW / streams).max(1))
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            max_concurrent_streams: 10_000,
            stream_window: 192 * 1024,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_tolerance: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            max_control_message: 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_windows_of_all_streams_fit_in_one_connection_window() {
        let settings = SessionSettings::default();
        assert_eq!(settings.effective_stream_window(), settings.stream_window);
        let all =
            u64::from(settings.stream_window) * u64::from(settings.max_concurrent_streams + 1);
        assert!(all <= u64::from(settings.connection_window()));
    }

    #[test]
    fn a_stream_window_too_large_for_the_stream_cap_is_lowered_to_fit() {
        let settings = SessionSettings {
            max_concurrent_streams: 20_000,
            stream_window: 1024 * 1024,
            ..SessionSettings::default()
        };
        let window = settings.effective_stream_window();
        assert_eq!(window, MAX_WINDOW / 20_001);
        assert!(u64::from(window) * 20_001 <= u64::from(MAX_WINDOW));

        let settings = SessionSettings {
            max_concurrent_streams: u32::MAX,
            stream_window: 0,
            ..SessionSettings::default()
        };
        assert_eq!(settings.effective_stream_window(), 1);
    }
}
