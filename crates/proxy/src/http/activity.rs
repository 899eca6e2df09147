//! Tracks whether a client connection is busy, idle, or slowly sending headers, for its timeouts.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The two client-side limits, copied from the endpoint's timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientLimits {
    /// Time from the first byte of a request (or from the connection's start, for the first
    /// request) until its headers are complete.
    pub request_header: Duration,
    /// Time a connection may sit with no request in flight and no bytes arriving.
    pub idle: Duration,
}

/// What the connection's watchdog should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing yet; look again at this instant, or when activity changes (`None`).
    WaitUntil(Option<Instant>),
    /// The client started a request and did not finish its headers in time.
    HeaderTimeout,
    /// The connection has been idle too long.
    Idle,
}

#[derive(Debug)]
struct State {
    /// Requests whose response has not been fully sent yet.
    in_flight: usize,
    /// When the connection last became idle.
    idle_since: Instant,
    /// When bytes of a request not yet parsed began to arrive.
    head_started: Option<Instant>,
    /// When the watchdog looks next. Changes that move a deadline later leave it asleep (it
    /// finds the later deadline when it wakes); only one that falls before this wakes it, so a
    /// busy keep-alive connection does not wake its watchdog for every request.
    armed: Option<Instant>,
}

/// Shared between the connection's watchdog, its I/O and its in-flight requests.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Wakes the watchdog when a deadline may have moved earlier.
    changed: Notify,
    /// HTTP/2 connections carry control frames while idle, so bytes arriving say nothing about a
    /// request having started; only HTTP/1 tracks header progress from bytes.
    track_heads: bool,
    limits: ClientLimits,
}

impl Activity {
    /// A connection opened at `connected`: its first request's headers are due within
    /// `request_header` of that moment, however long the client took to start sending.
    pub(super) fn new(track_heads: bool, limits: ClientLimits, connected: Instant) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: connected,
                head_started: Some(connected),
                armed: None,
            }),
            changed: Notify::new(),
            track_heads,
            limits,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a request as started; the returned guard ends it when dropped (after its response
    /// body is sent or abandoned).
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        InFlight {
            activity: Arc::clone(self),
        }
    }

    fn bytes_arrived(&self) {
        if !self.track_heads {
            return;
        }
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            let now = Instant::now();
            state.head_started = Some(now);
            self.wake_if_sooner(state, now + self.limits.request_header);
        }
    }

    /// Wakes the watchdog when `deadline` comes before the moment it planned to look.
    fn wake_if_sooner(&self, state: MutexGuard<'_, State>, deadline: Instant) {
        let sooner = state.armed.is_none_or(|armed| deadline < armed);
        drop(state);
        if sooner {
            self.changed.notify_one();
        }
    }

    /// Waits until a change needs the watchdog before the moment it planned to look.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Decides, at `now`, whether a limit is exceeded; when not, returns when to look again and
    /// records it. While a request is in flight no limit runs, and the watchdog still looks
    /// again after the shorter limit: any deadline set later cannot fall before that moment, so
    /// the changes of a busy connection never need to wake it.
    pub(super) fn next_check(&self, now: Instant) -> Result<Instant, Verdict> {
        let next = match self.verdict(now, self.limits) {
            Verdict::WaitUntil(Some(deadline)) => deadline,
            Verdict::WaitUntil(None) => now + self.limits.request_header.min(self.limits.idle),
            exceeded => return Err(exceeded),
        };
        self.lock().armed = Some(next);
        Ok(next)
    }

    /// Decides, at `now`, whether a limit is exceeded.
    fn verdict(&self, now: Instant, limits: ClientLimits) -> Verdict {
        let state = self.lock();
        if state.in_flight > 0 {
            return Verdict::WaitUntil(None);
        }
        if let Some(started) = state.head_started {
            let deadline = started + limits.request_header;
            return if now >= deadline {
                Verdict::HeaderTimeout
            } else {
                Verdict::WaitUntil(Some(deadline))
            };
        }
        let deadline = state.idle_since + limits.idle;
        if now >= deadline {
            Verdict::Idle
        } else {
            Verdict::WaitUntil(Some(deadline))
        }
    }
}

/// One request in flight on a connection; dropping it marks the request finished.
#[derive(Debug)]
pub(super) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            let now = Instant::now();
            state.idle_since = now;
            self.activity
                .wake_if_sooner(state, now + self.activity.limits.idle);
        }
    }
}

/// The client connection's I/O, reporting arriving bytes to its [`Activity`].
pub(super) struct ObservedIo<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO> ObservedIo<IO> {
    /// Wraps a client connection's I/O.
    pub(super) fn new(inner: IO, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ObservedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ObservedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ClientLimits = ClientLimits {
        request_header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn first_request_headers_are_due_within_the_header_timeout() {
        let activity = Activity::new(true, LIMITS, Instant::now());
        let now = Instant::now();
        assert!(matches!(
            activity.verdict(now, LIMITS),
            Verdict::WaitUntil(Some(_))
        ));
        assert_eq!(
            activity.verdict(now + Duration::from_secs(11), LIMITS),
            Verdict::HeaderTimeout
        );
    }

    #[tokio::test]
    async fn idle_connection_closes_after_the_idle_timeout_not_the_header_timeout() {
        let activity = Activity::new(true, LIMITS, Instant::now());
        drop(activity.request_started());
        let now = Instant::now();
        assert!(matches!(
            activity.verdict(now + Duration::from_secs(30), LIMITS),
            Verdict::WaitUntil(Some(_))
        ));
        assert_eq!(
            activity.verdict(now + Duration::from_secs(61), LIMITS),
            Verdict::Idle
        );
        activity.bytes_arrived();
        assert_eq!(
            activity.verdict(Instant::now() + Duration::from_secs(11), LIMITS),
            Verdict::HeaderTimeout
        );
    }

    #[tokio::test]
    async fn the_first_header_deadline_counts_from_the_connection_not_its_first_byte() {
        // hyper's connection is built once the client's first bytes arrive; a client that waits
        // 8 s to send them still has only the remaining 2 s of its 10 s to finish the headers.
        let now = Instant::now();
        let activity = Activity::new(true, LIMITS, now - Duration::from_secs(8));
        assert!(matches!(
            activity.verdict(now, LIMITS),
            Verdict::WaitUntil(Some(_))
        ));
        assert_eq!(
            activity.verdict(now + Duration::from_secs(3), LIMITS),
            Verdict::HeaderTimeout
        );
    }

    #[tokio::test]
    async fn busy_connection_never_times_out() {
        let activity = Activity::new(true, LIMITS, Instant::now());
        let _request = activity.request_started();
        assert_eq!(
            activity.verdict(Instant::now() + Duration::from_secs(3600), LIMITS),
            Verdict::WaitUntil(None)
        );
    }
}
