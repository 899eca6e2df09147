//! Tracks whether a client connection is busy, idle, or slowly sending headers, for its timeouts
//! and for when an HTTP/1 connection can give hyper's buffers back.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// An HTTP/1 connection has been idle long enough to give hyper's buffers back.
    Release,
}

/// How long an HTTP/1 connection sits between requests before hyper's buffers are given back.
/// Giving them back at once would rebuild hyper for nearly every request of a busy keep-alive
/// client (measured: about 10 % more CPU per request); a connection quiet for 250 ms is between
/// bursts, while a busy one's watchdog wakes only four times a second. Every connection that
/// finished a request within the last 250 ms still holds hyper (about 24 KiB), and the heap keeps
/// that peak: 700 new connections a second, each after one request, leave ~4.2 MiB at most.
const RELEASE_HYPER_AFTER: Duration = Duration::from_millis(250);

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
    /// HTTP/1, while hyper's state is built and not yet asked to be given back: not before this
    /// instant (nor before 250 ms after the last request ended).
    release_due: Option<Instant>,
}

/// Shared between the connection's watchdog, its I/O and its in-flight requests.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Wakes the watchdog when a deadline may have moved earlier.
    changed: Notify,
    /// HTTP/2 connections carry control frames while idle, so bytes arriving say nothing about a
    /// request having started; only HTTP/1 tracks header progress from bytes, and only HTTP/1
    /// gives hyper's state back between requests (HTTP/2's lives in h2 and its streams).
    http1: bool,
    limits: ClientLimits,
    /// Reads and writes hyper asked of the connection: unchanged across a poll proves hyper
    /// did not touch the connection in it (see [`Activity::io_calls`]).
    io_calls: AtomicU64,
    /// Written to since the last completed flush. hyper flushes the connection only once its
    /// own write buffer is empty, so false means nothing of a response waits in hyper.
    unflushed: AtomicBool,
}

impl Activity {
    /// A connection opened at `connected`: its first request's headers are due within
    /// `request_header` of that moment, however long the client took to start sending.
    pub(super) fn new(http1: bool, limits: ClientLimits, connected: Instant) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: connected,
                head_started: Some(connected),
                armed: None,
                release_due: None,
            }),
            changed: Notify::new(),
            http1,
            limits,
            io_calls: AtomicU64::new(0),
            unflushed: AtomicBool::new(false),
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
        if !self.http1 {
            return;
        }
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            let now = Instant::now();
            state.head_started = Some(now);
            self.wake_if_sooner(state, now + self.limits.request_header);
        }
    }

    /// Whether an HTTP/1 connection sits between requests with hyper holding nothing: no
    /// request in flight, no byte of a next one arrived since the last finished, and the last
    /// response flushed. hyper's state may then be given back (it may still have read part of
    /// a pipelined request ahead, which it hands back with its state).
    pub(super) fn looks_idle(&self) -> bool {
        if !self.http1 || self.unflushed.load(Ordering::Relaxed) {
            return false;
        }
        let state = self.lock();
        state.in_flight == 0 && state.head_started.is_none()
    }

    /// Marks hyper's state as built again for an HTTP/1 connection.
    pub(super) fn hyper_built(&self) {
        self.lock().release_due = Some(Instant::now());
    }

    /// The connection could not give hyper back when asked (a response not yet flushed to a
    /// slow reader, say): the watchdog asks again 250 ms from `now`.
    pub(super) fn release_later(&self, now: Instant) {
        self.lock().release_due = Some(now + RELEASE_HYPER_AFTER);
    }

    /// How long a connection with nothing in flight may go unwatched: any deadline set later
    /// (a request ending, bytes arriving) falls after it.
    fn quiet_interval(&self) -> Duration {
        let limit = self.limits.request_header.min(self.limits.idle);
        if self.http1 {
            limit.min(RELEASE_HYPER_AFTER)
        } else {
            limit
        }
    }

    /// How many reads and writes hyper has asked of the connection so far.
    pub(super) fn io_calls(&self) -> u64 {
        self.io_calls.load(Ordering::Relaxed)
    }

    fn count_io_call(&self) {
        self.io_calls.fetch_add(1, Ordering::Relaxed);
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
            Verdict::WaitUntil(None) => now + self.quiet_interval(),
            Verdict::Release => {
                // Asked once; marked again when hyper is built again, or asked to try later.
                self.lock().release_due = None;
                return Err(Verdict::Release);
            }
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
            return Verdict::Idle;
        }
        if self.http1
            && let Some(due) = state.release_due
        {
            let release_at = due.max(state.idle_since + RELEASE_HYPER_AFTER);
            if now >= release_at {
                return Verdict::Release;
            }
            return Verdict::WaitUntil(Some(release_at.min(deadline)));
        }
        Verdict::WaitUntil(Some(deadline))
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
            let limits = self.activity.limits;
            let first_deadline = if self.activity.http1 {
                limits.idle.min(RELEASE_HYPER_AFTER)
            } else {
                limits.idle
            };
            self.activity.wake_if_sooner(state, now + first_deadline);
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

    /// The client connection itself.
    pub(super) fn into_inner(self) -> IO {
        self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ObservedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        self.activity.count_io_call();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<IO> ObservedIo<IO> {
    fn wrote(&self) {
        self.activity.unflushed.store(true, Ordering::Relaxed);
        self.activity.count_io_call();
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ObservedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.activity.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
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

    #[tokio::test]
    async fn an_http1_connection_quiet_for_250_ms_gives_hyper_back_once() {
        let activity = Activity::new(true, LIMITS, Instant::now());
        activity.hyper_built();
        drop(activity.request_started());
        let now = Instant::now();
        assert_eq!(
            activity.verdict(now + Duration::from_millis(200), LIMITS),
            Verdict::WaitUntil(Some(activity.lock().idle_since + RELEASE_HYPER_AFTER))
        );
        assert_eq!(
            activity.next_check(now + Duration::from_millis(300)),
            Err(Verdict::Release)
        );
        // Asked once: the idle timeout is what comes next, until hyper is built again.
        assert!(
            activity
                .next_check(now + Duration::from_millis(400))
                .is_ok()
        );
        assert_eq!(
            activity.verdict(now + Duration::from_secs(61), LIMITS),
            Verdict::Idle
        );
        activity.hyper_built();
        drop(activity.request_started());
        assert_eq!(
            activity.next_check(Instant::now() + Duration::from_millis(300)),
            Err(Verdict::Release)
        );
    }

    #[tokio::test]
    async fn http2_connections_and_busy_ones_never_give_hyper_back() {
        let http2 = Activity::new(false, LIMITS, Instant::now());
        http2.hyper_built();
        drop(http2.request_started());
        assert!(
            http2
                .next_check(Instant::now() + Duration::from_secs(5))
                .is_ok()
        );

        let busy = Activity::new(true, LIMITS, Instant::now());
        busy.hyper_built();
        let _request = busy.request_started();
        assert!(
            busy.next_check(Instant::now() + Duration::from_secs(5))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_release_that_could_not_happen_is_asked_again_250_ms_later() {
        let activity = Activity::new(true, LIMITS, Instant::now());
        activity.hyper_built();
        drop(activity.request_started());
        let asked = Instant::now() + Duration::from_millis(300);
        assert_eq!(activity.next_check(asked), Err(Verdict::Release));
        activity.release_later(asked);
        assert!(
            activity
                .next_check(asked + Duration::from_millis(200))
                .is_ok()
        );
        assert_eq!(
            activity.next_check(asked + Duration::from_millis(300)),
            Err(Verdict::Release)
        );
    }
}
