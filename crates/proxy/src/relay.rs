//! Copying a connection both ways with buffers that exist only while bytes move.
//!
//! tokio's `copy_bidirectional` keeps one zeroed buffer per direction for the connection's whole
//! life: 32 KiB of resident memory for every idle relayed connection at 16 KiB each, which is
//! most of what an edge holds per client it relays (measured with bench/run.sh --part tunnel:
//! 47 KiB per idle connection). Here a direction takes its buffer when it reads and gives it back
//! as soon as the reader has nothing more and everything read has been written, so an idle
//! connection holds none; the buffer is not zeroed, so a short burst touches only the pages it
//! fills.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

/// Copies `a` → `b` and `b` → `a` until both directions have ended, each with buffers of up to
/// `buffer_bytes` taken only while it has bytes in flight. An end of stream on one side is
/// passed on as a shutdown of the other (TCP FIN, TLS close_notify). Returns the bytes copied
/// `a` → `b` and `b` → `a`; the first error ends both directions.
pub async fn copy_both_ways<A, B>(
    a: &mut A,
    b: &mut B,
    buffer_bytes: usize,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    BothWays {
        a,
        b,
        a_to_b: Direction::new(buffer_bytes),
        b_to_a: Direction::new(buffer_bytes),
    }
    .await
}

struct BothWays<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl<A, B> Future for BothWays<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let a_to_b = this.a_to_b.poll_copy(cx, &mut *this.a, &mut *this.b)?;
        let b_to_a = this.b_to_a.poll_copy(cx, &mut *this.b, &mut *this.a)?;
        match (a_to_b, b_to_a) {
            (Poll::Ready(there), Poll::Ready(back)) => Poll::Ready(Ok((there, back))),
            _ => Poll::Pending,
        }
    }
}

/// One direction's state.
struct Direction {
    /// Bytes read and not yet written; no capacity while the direction is idle.
    buffer: BytesMut,
    buffer_bytes: usize,
    /// The reader reached its end.
    read_done: bool,
    /// The writer was shut down after the end (the direction is finished).
    done: bool,
    /// Bytes were written since the last flush.
    need_flush: bool,
    copied: u64,
}

impl Direction {
    fn new(buffer_bytes: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            buffer_bytes: buffer_bytes.max(1),
            read_done: false,
            done: false,
            need_flush: false,
            copied: 0,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(self.copied));
        }
        loop {
            if self.buffer.is_empty() && !self.read_done {
                // `reserve` reuses the whole allocation once everything in it was written.
                self.buffer.reserve(self.buffer_bytes);
                match poll_read_buf(Pin::new(&mut *reader), cx, &mut self.buffer) {
                    Poll::Ready(Ok(0)) => self.read_done = true,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {
                        // Nothing to copy: hand what was written on, then hold no buffer
                        // while waiting.
                        self.buffer = BytesMut::new();
                        if self.need_flush {
                            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while !self.buffer.is_empty() {
                let written = ready!(Pin::new(&mut *writer).poll_write(cx, &self.buffer))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.buffer.advance(written);
                self.copied += written as u64;
                self.need_flush = true;
            }
            if self.read_done {
                self.buffer = BytesMut::new();
                if self.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(self.copied));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Bytes cross both ways intact, in pieces larger and smaller than the buffer, and each
    /// side's end reaches the other as an end of stream.
    #[tokio::test]
    async fn copies_both_ways_and_passes_each_end_on() {
        let (mut client, mut near) = tokio::io::duplex(64 * 1024);
        let (mut far, mut server) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(async move { copy_both_ways(&mut near, &mut far, 1000).await });
        let upload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let download: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let (sent, received) = tokio::join!(
            async {
                client.write_all(&upload).await.unwrap();
                client.shutdown().await.unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).await.unwrap();
                back
            },
            async {
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                server.write_all(&download).await.unwrap();
                server.shutdown().await.unwrap();
                got
            }
        );
        assert_eq!(received, upload);
        assert_eq!(sent, download);
        let (there, back) = relay.await.unwrap().unwrap();
        assert_eq!((there, back), (300_000, 200_000));
    }

    /// While neither side sends, the relay holds no buffer (the state a keep-alive client leaves
    /// a relayed connection in).
    #[tokio::test]
    async fn an_idle_direction_holds_no_buffer() {
        let (mut client, mut near) = tokio::io::duplex(1024);
        let (mut far, mut server) = tokio::io::duplex(1024);
        let mut a_to_b = Direction::new(16 * 1024);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(a_to_b.poll_copy(&mut cx, &mut near, &mut far).is_pending());
        assert_eq!(a_to_b.buffer.capacity(), 0, "no buffer kept while idle");
        let mut got = [0u8; 18];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
    }
}
