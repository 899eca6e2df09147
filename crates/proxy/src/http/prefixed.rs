//! A client connection with bytes put back in front of it: what hyper had read but not parsed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

/// Reads `prefix` before the connection itself. When moat ends hyper's HTTP/1 connection
/// between requests (to free its buffers) or takes the connection over after a `101`, hyper
/// hands back the bytes it had read past the last request: a pipelined request, or the first
/// WebSocket frames. They must reach the next reader in order, or requests would be lost.
pub(super) struct Prefixed<IO> {
    prefix: Bytes,
    inner: IO,
}

impl<IO> Prefixed<IO> {
    /// The connection with nothing put back yet.
    pub(super) fn new(inner: IO) -> Self {
        Self {
            prefix: Bytes::new(),
            inner,
        }
    }

    /// Puts `unread` back, to be read before anything still put back and the connection.
    pub(super) fn put_back(&mut self, unread: Bytes) {
        if unread.is_empty() {
            return;
        }
        if self.prefix.is_empty() {
            self.prefix = unread;
            return;
        }
        let mut joined = BytesMut::with_capacity(unread.len() + self.prefix.len());
        joined.extend_from_slice(&unread);
        joined.extend_from_slice(&self.prefix);
        self.prefix = joined.freeze();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncBufRead + Unpin> AsyncBufRead for Prefixed<IO> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            return Poll::Ready(Ok(&this.prefix));
        }
        Pin::new(&mut this.inner).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            Pin::new(&mut this.inner).consume(amount);
        } else {
            this.prefix.advance(amount.min(this.prefix.len()));
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
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
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

    #[tokio::test]
    async fn put_back_bytes_come_first_in_order_then_the_connection() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b" from the wire").await.unwrap();
        drop(server);
        let mut io = Prefixed::new(BufReader::new(client));
        io.put_back(Bytes::from_static(b"second"));
        io.put_back(Bytes::from_static(b"first "));
        io.put_back(Bytes::new());
        let mut read = String::new();
        io.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "first second from the wire");
    }

    #[tokio::test]
    async fn fill_buf_shows_put_back_bytes_before_waiting_on_the_connection() {
        let (client, _server) = tokio::io::duplex(64);
        let mut io = Prefixed::new(BufReader::new(client));
        io.put_back(Bytes::from_static(b"GET / HTTP/1.1\r\n"));
        assert_eq!(io.fill_buf().await.unwrap(), b"GET / HTTP/1.1\r\n");
        Pin::new(&mut io).consume(4);
        assert_eq!(io.fill_buf().await.unwrap(), b"/ HTTP/1.1\r\n");
    }
}
