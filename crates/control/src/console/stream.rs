//! The feed as Server-Sent Events: what the page missed (all the ring holds on first
//! connection), then each new entry as it happens, with a comment every 15 s so a client that
//! left is noticed and a proxy keeps the connection open.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::{broadcast, mpsc, watch};

use super::feed::{Feed, FeedEntry};

/// How often an idle stream sends a comment.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Frames waiting for a slow client before the writer waits too.
const QUEUE: usize = 64;

/// A response body that is the frames a writer task sends; it ends when the task does.
#[derive(Debug)]
pub(crate) struct EventStream {
    frames: mpsc::Receiver<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

impl EventStream {
    /// Streams `feed` after entry `after` (the `Last-Event-ID` of a reconnecting page, else 0)
    /// until the client leaves or `closing` turns true (the listener stops).
    pub fn follow(feed: &Feed, after: u64, mut closing: watch::Receiver<bool>) -> EventStream {
        let (backlog, mut live) = feed.follow(after);
        let (sender, frames) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            // The browser reconnects after 2 s when the stream breaks.
            if sender
                .send(Bytes::from_static(b"retry: 2000\n\n"))
                .await
                .is_err()
            {
                return;
            }
            for entry in backlog {
                if sender.send(frame(&entry)).await.is_err() {
                    return;
                }
            }
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            loop {
                let next = tokio::select! {
                    received = live.recv() => match received {
                        Ok(entry) => frame(&entry),
                        // Fell behind: the page reloads the ring by reconnecting.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            Bytes::from_static(b"event: lagged\ndata: {}\n\n")
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                    _ = closing.wait_for(|closing| *closing) => return,
                };
                if sender.send(next).await.is_err() {
                    return;
                }
            }
        });
        EventStream { frames }
    }
}

/// One entry as an event: `id: SEQ`, `data: JSON` (one line: serde_json writes no newline).
fn frame(entry: &FeedEntry) -> Bytes {
    Bytes::from(format!("id: {}\ndata: {}\n\n", entry.seq, entry.json))
}
