//! The live feed: Server-Sent Events of new exchanges, refused handshakes and clears, so the
//! page updates without reloading.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

/// Events a slow page may fall behind by before it is told to reload its list (`lagged`).
pub(crate) const FEED_BACKLOG: usize = 256;

/// A comment line every so often keeps proxies and the browser from closing a quiet feed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// One event as SSE bytes: `event: NAME`, one `data:` line of JSON.
pub(crate) fn frame(event: &str, data: &Value) -> Bytes {
    // serde_json escapes line breaks inside strings, so the JSON is one line.
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A response body that streams the feed to one page until it goes away.
#[derive(Debug)]
pub(crate) struct FeedBody {
    frames: mpsc::Receiver<Bytes>,
}

impl FeedBody {
    /// Follows `feed` from now on.
    pub(crate) fn follow(mut feed: broadcast::Receiver<Bytes>) -> FeedBody {
        let (sender, frames) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            // The page learns at once that it is connected.
            if sender
                .send(Bytes::from_static(b": connected\n\n"))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let next = tokio::select! {
                    received = feed.recv() => match received {
                        Ok(frame) => frame,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            Bytes::from_static(b"event: lagged\ndata: {}\n\n")
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                };
                if sender.send(next).await.is_err() {
                    return;
                }
            }
        });
        FeedBody { frames }
    }
}

impl Body for FeedBody {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_event_with_one_data_line() {
        let frame = frame("request", &serde_json::json!({"path": "/a\nb"}));
        assert_eq!(
            &frame[..],
            b"event: request\ndata: {\"path\":\"/a\\nb\"}\n\n"
        );
    }
}
