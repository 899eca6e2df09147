//! Entrances: client connections that arrive on a stream (an edge's tunnel) rather than a socket.
//!
//! An agent that terminates TLS itself receives each public client's raw TLS bytes on a tunnel
//! stream. It hands that stream to the [`Entrance`] of the listen address serving the endpoint,
//! and the address's accept loop takes it as if it had accepted it: the same `max_connections`
//! permits, routes (reloads included), handshake, alerts, rules, identity headers, audit events
//! and drain at shutdown, with the address the caller gives as the client's.

use std::fmt;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::handshake::ClientStream;

/// How many handed-in connections may wait for their accept loop to take them, per address; a
/// caller handing in more waits, as a client waits in a full listen backlog. The accept loop
/// takes them as fast as sockets, so the queue only fills before `serve` starts.
pub(crate) const QUEUE: usize = 64;

/// A connection handed in through an [`Entrance`], on its way to the address's accept loop.
pub(crate) struct HandedIn {
    /// The client's bytes, boxed so that every kind of stream takes the same path (and the
    /// gateway's connection code is compiled once for them all).
    pub(crate) stream: Box<dyn ClientStream>,
    /// The client's address, as the caller vouches for it.
    pub(crate) peer: SocketAddr,
    /// The address the client connected to (an edge's public address), for the logs, audit
    /// events and PROXY headers that name it.
    pub(crate) local: SocketAddr,
}

/// The queue from the entrances of one listen address to its accept loop.
pub(crate) fn queue() -> (mpsc::Sender<HandedIn>, mpsc::Receiver<HandedIn>) {
    mpsc::channel(QUEUE)
}

/// Hands client connections that arrived on a stream to the gateway, to be served exactly as
/// the connections accepted on one listen address are. Cheap to clone; see
/// [`Gateway::entrance`](crate::Gateway::entrance).
#[derive(Clone)]
pub struct Entrance {
    local_addr: SocketAddr,
    queue: mpsc::Sender<HandedIn>,
}

/// Why a connection could not be handed in: the gateway stopped serving the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the gateway no longer serves {listen}: it is shutting down, or a reload removed every \
     endpoint on that address; take a new entrance after the reload that serves it again"
)]
pub struct EntranceClosed {
    /// The listen address whose entrance it was.
    pub listen: SocketAddr,
}

impl Entrance {
    /// The entrance of the accept loop reading `queue`.
    pub(crate) fn new(local_addr: SocketAddr, queue: mpsc::Sender<HandedIn>) -> Entrance {
        Entrance { local_addr, queue }
    }

    /// The listen address whose endpoints serve what comes in here (as in
    /// [`BoundEndpoint::local_addr`](crate::BoundEndpoint::local_addr)); it is the server
    /// address the handshake's rules and the PROXY header see.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hands `stream`, whose first bytes are the client's ClientHello, to the gateway as a
    /// connection from `peer`: that address is the client's in every rule (`source_ip`), log
    /// line, audit event, `X-Forwarded-For` and PROXY header, so the caller must know it (a
    /// tunnel's stream header, not the tunnel's own peer).
    ///
    /// Returns once the address's accept loop has the connection queued; from then on the
    /// gateway owns it (and refuses it as `connection_limit` when `max_connections` are open).
    /// Waits while the queue is full, e.g. before [`Gateway::serve`](crate::Gateway::serve)
    /// has started. A connection still queued when the address stops accepting is closed.
    pub async fn hand_in<S>(&self, stream: S, peer: SocketAddr) -> Result<(), EntranceClosed>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.hand_in_to(stream, peer, self.local_addr).await
    }

    /// [`Entrance::hand_in`] for a client that connected to `local`, another address than the
    /// gateway's own (an edge's public address, from the stream header): what its logs, audit
    /// events and PROXY protocol headers name as the connection's destination.
    pub async fn hand_in_to<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<(), EntranceClosed>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handed = HandedIn {
            stream: Box::new(stream),
            peer,
            local,
        };
        self.queue.send(handed).await.map_err(|_| EntranceClosed {
            listen: self.local_addr,
        })
    }

    /// Resolves once the gateway takes no more connections here: it is shutting down (and
    /// draining the connections it has), or a reload removed every endpoint on the address. An
    /// agent withdraws the address's endpoints from its edge then.
    pub async fn closed(&self) {
        self.queue.closed().await;
    }
}

impl fmt::Debug for Entrance {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Entrance")
            .field("local_addr", &self.local_addr)
            .field("closed", &self.queue.is_closed())
            .finish()
    }
}
