//! `TunnelStream`: one HTTP/2 stream pair as a tokio byte stream, with its flow control kept.
//!
//! The edge writes the request body and reads the response body; the agent the other way
//! round. Writing waits for send window (so a slow reader slows only its own stream's
//! writer); reading gives the window back only once the caller has the bytes; `shutdown`
//! ends the writing direction (END_STREAM) while reading goes on; a reset reads and writes
//! as an `io::Error`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{Reason, RecvStream, SendStream};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The response header in which the agent says why it refused a stream.
pub(crate) const REFUSAL: &str = "moat-tunnel-refusal";

/// The most one `poll_write` asks window for. h2 never assigns more than the stream window
/// (256 KiB by default) anyway; this caps the copy out of the caller's buffer.
const MAX_WRITE: usize = 1024 * 1024;

/// One tunnelled connection: `AsyncRead + AsyncWrite` over one HTTP/2 stream.
#[derive(Debug)]
pub struct TunnelStream {
    reader: TunnelReader,
    writer: TunnelWriter,
}

/// The reading half of a [`TunnelStream`].
#[derive(Debug)]
pub struct TunnelReader {
    state: ReadState,
    /// Received bytes the caller has not taken yet; their window is still held.
    unread: Bytes,
}

#[derive(Debug)]
enum ReadState {
    /// The edge's side before the agent's response headers: writing may already go on.
    Response(ResponseFuture),
    Body(RecvStream),
}

/// The writing half of a [`TunnelStream`]. Dropping it before `shutdown` resets the stream
/// (CANCEL), so that the peer never mistakes an aborted stream for a complete one.
#[derive(Debug)]
pub struct TunnelWriter {
    send: SendStream<Bytes>,
    ended: bool,
}

impl TunnelStream {
    /// The edge's side: the request body to write, the response (then its body) to read.
    pub(crate) fn edge(response: ResponseFuture, send: SendStream<Bytes>) -> TunnelStream {
        TunnelStream::new(ReadState::Response(response), send)
    }

    /// The agent's side: the request body to read, the response body to write.
    pub(crate) fn agent(recv: RecvStream, send: SendStream<Bytes>) -> TunnelStream {
        TunnelStream::new(ReadState::Body(recv), send)
    }

    fn new(state: ReadState, send: SendStream<Bytes>) -> TunnelStream {
        TunnelStream {
            reader: TunnelReader {
                state,
                unread: Bytes::new(),
            },
            writer: TunnelWriter { send, ended: false },
        }
    }

    /// The two halves, to read and write from different tasks.
    pub fn into_split(self) -> (TunnelReader, TunnelWriter) {
        (self.reader, self.writer)
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.writer.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}

impl AsyncRead for TunnelReader {
    /// Fills `buf` from every frame already received, not just the first: the agent sends
    /// what each upstream read gave (often 20-40 KiB), and a caller with a large buffer
    /// (hyper grows its own to 400 KiB) then moves the stream in fewer, larger writes on
    /// its other side. Waits only while nothing has been read.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut read = false;
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread.split_to(n));
                read = true;
                if let ReadState::Body(recv) = &mut this.state {
                    // The window goes back only now that the caller holds the bytes: a reader
                    // that stops reading stops its own stream's writer and no other. An error
                    // means the stream is already gone; the next poll_data reports why.
                    let _ = recv.flow_control().release_capacity(n);
                }
                continue;
            }
            match &mut this.state {
                ReadState::Response(response) => {
                    let response = ready!(Pin::new(response).poll(cx)).map_err(io_error)?;
                    if response.status() != StatusCode::OK {
                        return Poll::Ready(Err(refused(&response)));
                    }
                    this.state = ReadState::Body(response.into_body());
                }
                ReadState::Body(recv) => match recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(data))) => this.unread = data,
                    // The bytes read so far first; h2 reports the stream's error again on
                    // the next poll.
                    Poll::Ready(Some(Err(_))) | Poll::Pending if read => {
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(io_error(error))),
                    // END_STREAM: the peer shut its writing side down.
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

impl AsyncWrite for TunnelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    /// Gathers the slices into one DATA frame: a TLS stream above (the agent's gateway) hands
    /// over several 16 KiB records at once, which would otherwise each become a frame of
    /// their own, with its own TLS record and wake-up of the session's driver.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is queued in the session; its driver task writes it to the transport
        // as windows allow, like a socket's send buffer.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            // An empty DATA frame with END_STREAM, queued after any data still waiting for window.
            if let Err(error) = this.send.send_data(Bytes::new(), true) {
                return Poll::Ready(Err(this.failure(cx, error)));
            }
            this.ended = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl TunnelWriter {
    /// Queues as much of `bufs` as the stream's send window takes now, as one DATA frame.
    fn poll_send(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|buf| buf.len()).sum::<usize>();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.ended {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "tunnel stream: write after shutdown",
            )));
        }
        // The request is the total wanted beyond what h2 already buffers for this stream.
        self.send.reserve_capacity(total.min(MAX_WRITE));
        loop {
            // Capacity assigned earlier and not yet used counts too: poll_capacity only
            // reports increases.
            let available = self.send.capacity().min(total);
            if available > 0 {
                let mut data = BytesMut::with_capacity(available);
                for buf in bufs {
                    let room = available - data.len();
                    if room == 0 {
                        break;
                    }
                    data.put_slice(&buf[..buf.len().min(room)]);
                }
                return match self.send.send_data(data.freeze(), false) {
                    Ok(()) => Poll::Ready(Ok(available)),
                    Err(error) => Poll::Ready(Err(self.failure(cx, error))),
                };
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Poll::Ready(Err(self.failure(cx, error))),
                // The stream can no longer send: reset by the peer or the session ended.
                None => return self.poll_gone(cx),
            }
        }
    }

    /// An error from sending, told as the peer's reset when that is what it was (h2 itself
    /// only says the stream is no longer active).
    fn failure(&mut self, cx: &mut Context<'_>, error: h2::Error) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => reset_error(reason),
            _ => io_error(error),
        }
    }

    /// Why a stream that can no longer send is gone.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let error = match ready!(self.send.poll_reset(cx)) {
            Ok(reason) => reset_error(reason),
            Err(error) => io_error(error),
        };
        Poll::Ready(Err(error))
    }
}

impl Drop for TunnelWriter {
    fn drop(&mut self) {
        if !self.ended {
            self.send.send_reset(Reason::CANCEL);
        }
    }
}

/// An h2 error as the `io::Error` a byte stream would give: a reset is `ConnectionReset`
/// (`ConnectionRefused` for REFUSED_STREAM), a GOAWAY `ConnectionAborted`, transport
/// errors as they were.
pub(crate) fn io_error(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error
            .into_io()
            .unwrap_or_else(|| io::Error::other("tunnel transport failed"));
    }
    let kind = if error.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else if error.reason() == Some(Reason::REFUSED_STREAM) {
        io::ErrorKind::ConnectionRefused
    } else if error.is_reset() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, error)
}

fn reset_error(reason: Reason) -> io::Error {
    let kind = match reason {
        Reason::REFUSED_STREAM => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, format!("tunnel stream reset by the peer ({reason})"))
}

fn refused(response: &http::Response<RecvStream>) -> io::Error {
    let why = response
        .headers()
        .get(REFUSAL)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("no reason given");
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("agent refused the stream ({}): {why}", response.status()),
    )
}
