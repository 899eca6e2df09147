//! After a WebSocket upgrade (`101`, or `200` to an HTTP/2 extended CONNECT), copies bytes both
//! ways between client and upstream.

use std::sync::{Mutex, PoisonError};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};

use super::activity::InFlight;

/// A client connection once its HTTP/1 exchange has switched protocols, with any bytes the
/// client sent after its request put back in front.
pub(super) type UpgradedClient = Box<dyn ClientIo>;

/// What an upgraded client connection is: a byte stream both ways.
pub(super) trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// Where a request that is being upgraded waits for its client connection. moat runs hyper's
/// HTTP/1 connections without hyper's upgrade support (it ends them between requests to free
/// their buffers, see `http1.rs`), so the connection, not hyper, hands itself over once the
/// `101` is sent.
#[derive(Default)]
pub(super) struct UpgradeSlot {
    waiting: Mutex<Option<oneshot::Sender<UpgradedClient>>>,
}

impl UpgradeSlot {
    /// Asks for the client connection after the response in flight; the receiver fails when
    /// the response sent was not a `101` or the client left.
    pub(super) fn expect(&self) -> oneshot::Receiver<UpgradedClient> {
        let (sender, receiver) = oneshot::channel();
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
        receiver
    }

    /// The request still waiting for the connection, if one is; a request that gave up (its
    /// upstream did not switch, or it was dropped) no longer counts.
    pub(super) fn take_waiting(&self) -> Option<oneshot::Sender<UpgradedClient>> {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|sender| !sender.is_closed())
    }
}

/// Where the client's side of a WebSocket comes from.
pub(super) enum ClientUpgrade {
    /// An HTTP/1.1 connection, handed over by the connection after the `101`.
    Http1(oneshot::Receiver<UpgradedClient>),
    /// An HTTP/2 stream (RFC 8441 extended CONNECT), once hyper has sent the `200`. The
    /// connection carries other requests too: the tunnel counts as one in flight, so the idle
    /// timeout does not close the connection under it.
    Http2 {
        /// hyper's hand-over of the stream.
        stream: OnUpgrade,
        /// Held while the tunnel lasts.
        in_flight: InFlight,
    },
}

impl ClientUpgrade {
    /// The client's byte stream once it has switched, with what marks it in flight; `None`
    /// when the client never switched (the response was not sent, or it left).
    async fn switched(self) -> Option<(UpgradedClient, Option<InFlight>)> {
        match self {
            ClientUpgrade::Http1(receiver) => receiver.await.ok().map(|client| (client, None)),
            ClientUpgrade::Http2 { stream, in_flight } => stream.await.ok().map(|upgraded| {
                (
                    Box::new(TokioIo::new(upgraded)) as UpgradedClient,
                    Some(in_flight),
                )
            }),
        }
    }
}

/// Joins the client's and the upstream's upgraded connections once both sides have switched,
/// and copies until either closes or the gateway shuts down (a tunnel has no request boundary
/// at which to stop gracefully).
pub(super) fn spawn_tunnel(
    client: ClientUpgrade,
    upstream: OnUpgrade,
    mut shutdown: watch::Receiver<bool>,
    endpoint: String,
) {
    tokio::spawn(async move {
        let ((mut client, _in_flight), upstream) = match tokio::join!(client.switched(), upstream) {
            (Some(client), Ok(upstream)) => (client, upstream),
            (client, upstream) => {
                tracing::debug!(
                    endpoint = %endpoint,
                    client_switched = client.is_some(),
                    upstream_error = ?upstream.err(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                match copied {
                    Ok((up, down)) => tracing::debug!(
                        endpoint = %endpoint, bytes_to_upstream = up, bytes_to_client = down,
                        "upgraded connection closed"
                    ),
                    Err(err) => tracing::debug!(
                        endpoint = %endpoint, error = %err, "upgraded connection ended with an error"
                    ),
                }
            }
            () = super::shutdown_requested(&mut shutdown) => {
                tracing::debug!(endpoint = %endpoint, "upgraded connection closed for shutdown");
            }
        }
    });
}
