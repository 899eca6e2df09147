//! The client's request body on its way upstream: progress for the response timeout, byte
//! counts, the slow-body limit, and failures that are the client's doing.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::BodyError;
use super::inspect::{SharedTee, tee_into};

/// How slowly a client may send a request body (Apache's mod_reqtimeout `body=20,MinRate=500`):
/// the time spent waiting for the client's next bytes may add up to `timeout`, plus one second
/// for every `min_rate` bytes received. A body dripping one byte every two seconds is cut off
/// after about 20 s; an upload at 500 bytes/s or faster never is.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    /// Waiting allowed before the rate allowance is added.
    pub timeout: Duration,
    /// Bytes per second that earn one more second of waiting; 0 adds nothing.
    pub min_rate: u64,
}

impl BodyLimits {
    /// The waiting a body that has sent `received` bytes may have accumulated.
    fn allowance(&self, received: u64) -> Duration {
        if self.min_rate == 0 {
            return self.timeout;
        }
        let earned = received as f64 / self.min_rate as f64;
        self.timeout
            .saturating_add(Duration::try_from_secs_f64(earned).unwrap_or(Duration::MAX))
    }
}

/// Why a request body did not reach the upstream whole, when it was the client's doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientBodyFailure {
    /// Slower than [`BodyLimits`] allow (408).
    TooSlow,
    /// Malformed, e.g. a bad chunk size (400).
    Invalid,
    /// The client closed or reset the connection (or stream) mid-body (499).
    Left,
}

impl ClientBodyFailure {
    fn code(self) -> u8 {
        match self {
            ClientBodyFailure::TooSlow => 1,
            ClientBodyFailure::Invalid => 2,
            ClientBodyFailure::Left => 3,
        }
    }

    fn from_code(code: u8) -> Option<ClientBodyFailure> {
        match code {
            1 => Some(ClientBodyFailure::TooSlow),
            2 => Some(ClientBodyFailure::Invalid),
            3 => Some(ClientBodyFailure::Left),
            _ => None,
        }
    }

    /// The failure behind a body error hyper reported while reading from the client.
    fn of(error: &hyper::Error) -> ClientBodyFailure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => ClientBodyFailure::Left,
                    _ => ClientBodyFailure::Invalid,
                };
            }
            if let Some(h2) = cause.downcast_ref::<h2::Error>()
                && (h2.is_reset() || h2.is_go_away() || h2.is_io())
            {
                return ClientBodyFailure::Left;
            }
            source = cause.source();
        }
        if error.is_canceled() || error.is_incomplete_message() {
            ClientBodyFailure::Left
        } else {
            ClientBodyFailure::Invalid
        }
    }
}

/// When the upstream last made progress on a request: connected, or took another body chunk.
/// The response timeout counts from here, so a long upload that the upstream keeps reading is
/// not mistaken for a stalled upstream.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    origin: Instant,
    /// Milliseconds after `origin`.
    last_ms: Arc<AtomicU64>,
    /// Request body bytes the upstream took, for the audit event and metrics.
    body_bytes: Arc<AtomicU64>,
    /// A [`ClientBodyFailure`] code, 0 while there is none.
    client_failure: Arc<AtomicU8>,
    /// True from the upstream's response head to the end of its body: the slow-body limit is
    /// suspended while the upstream is answering (a gRPC stream in both directions, where the
    /// client may stay silent by design while the upstream talks). A response that has ended
    /// (an early `413`, say) no longer covers a client still dripping its body.
    responding: Arc<AtomicBool>,
    /// The body waiting for the client while the limit was suspended, woken when the response
    /// ends so that the limit applies again.
    suspended: Arc<Mutex<Option<Waker>>>,
}

impl Progress {
    /// Progress of a request that starts now.
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            body_bytes: Arc::new(AtomicU64::new(0)),
            client_failure: Arc::new(AtomicU8::new(0)),
            responding: Arc::new(AtomicBool::new(false)),
            suspended: Arc::new(Mutex::new(None)),
        }
    }

    /// Request body bytes the upstream has taken so far.
    pub(super) fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// Why the client's body failed, if it did.
    pub(super) fn client_failure(&self) -> Option<ClientBodyFailure> {
        ClientBodyFailure::from_code(self.client_failure.load(Ordering::Relaxed))
    }

    /// Records that the upstream's response head arrived.
    pub(super) fn response_started(&self) {
        self.responding.store(true, Ordering::SeqCst);
    }

    /// Records that the response to the client has ended (sent or abandoned).
    pub(super) fn response_finished(&self) {
        self.responding.store(false, Ordering::SeqCst);
        let waiting = self
            .suspended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waiting {
            waker.wake();
        }
    }

    /// Whether the limit is suspended now; if so, `waker` is woken when it applies again.
    fn suspended_for(&self, waker: &Waker) -> bool {
        if !self.responding.load(Ordering::SeqCst) {
            return false;
        }
        *self
            .suspended
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        // The response may have ended between the check and the registration.
        self.responding.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    /// The instant of the last progress.
    pub(super) fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The client sent its body more slowly than [`BodyLimits`] allow.
#[derive(Debug, thiserror::Error)]
#[error("the client sent its request body too slowly (waited {} ms in all)", .0.as_millis())]
struct BodyTooSlow(Duration);

/// A request's body: from the client's connection, or the one the inspector sends again.
#[derive(Debug)]
pub(super) enum ClientBody {
    /// What hyper reads from the client.
    Incoming(Incoming),
    /// A replayed request's whole body (`None` once sent).
    Replayed(Option<Bytes>),
}

impl ClientBody {
    /// A replayed request's body.
    pub(super) fn replayed(body: Bytes) -> ClientBody {
        ClientBody::Replayed((!body.is_empty()).then_some(body))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Incoming(incoming) => Pin::new(incoming).poll_frame(cx),
            ClientBody::Replayed(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Incoming(incoming) => incoming.is_end_stream(),
            ClientBody::Replayed(body) => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Incoming(incoming) => incoming.size_hint(),
            ClientBody::Replayed(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The client's request body on its way upstream, recording [`Progress`] as the upstream reads
/// it and cutting it off when the client is slower than [`BodyLimits`]; with an inspector, its
/// first bytes are kept ([`super::inspect`]).
#[derive(Debug)]
pub(super) struct ProgressBody {
    inner: ClientBody,
    progress: Progress,
    tee: Option<SharedTee>,
    limits: BodyLimits,
    /// Time spent waiting for the client so far, not counting the wait under way.
    waited: Duration,
    /// When the wait under way began (the last poll found no data).
    waiting_since: Option<Instant>,
    /// The end of the allowance for the wait under way.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ProgressBody {
    /// Wraps the client's body so that each chunk the upstream takes counts as progress.
    pub(super) fn new(
        inner: ClientBody,
        progress: Progress,
        limits: BodyLimits,
        tee: Option<SharedTee>,
    ) -> Self {
        Self {
            inner,
            progress,
            tee,
            limits,
            waited: Duration::ZERO,
            waiting_since: None,
            deadline: None,
        }
    }
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Poll::Ready(frame) = polled else {
            if this.progress.suspended_for(cx.waker()) {
                // The upstream answers; how long the client takes is between the two of them,
                // bounded by the upstream's own silence (`timeouts.upstream_response`).
                this.waiting_since = None;
                this.deadline = None;
                return Poll::Pending;
            }
            let since = *this.waiting_since.get_or_insert_with(Instant::now);
            let limits = this.limits;
            let received = this.progress.body_bytes();
            let waited = this.waited;
            let deadline = this.deadline.get_or_insert_with(|| {
                let left = limits.allowance(received).saturating_sub(waited);
                Box::pin(tokio::time::sleep_until(since + left))
            });
            if deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let total = waited + since.elapsed();
            this.progress
                .client_failure
                .store(ClientBodyFailure::TooSlow.code(), Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow(total)))));
        };
        if let Some(since) = this.waiting_since.take() {
            this.waited += since.elapsed();
        }
        this.deadline = None;
        this.progress.touch();
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    this.progress
                        .body_bytes
                        .fetch_add(length, Ordering::Relaxed);
                    if let Some(tee) = &this.tee {
                        tee_into(tee, data);
                    }
                }
                // Trailers reach an HTTP/2 upstream, and some frameworks merge them into the
                // headers: a client may not claim an identity or an address there either.
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        super::headers::strip_client_claims(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let failure = ClientBodyFailure::of(&error);
                this.progress
                    .client_failure
                    .store(failure.code(), Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(error))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_min_rate_bytes_earn_one_second() {
        let limits = BodyLimits {
            timeout: Duration::from_secs(20),
            min_rate: 500,
        };
        assert_eq!(limits.allowance(0), Duration::from_secs(20));
        assert_eq!(limits.allowance(5_000), Duration::from_secs(30));
        let flat = BodyLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(flat.allowance(1 << 30), Duration::from_secs(20));
    }
}
