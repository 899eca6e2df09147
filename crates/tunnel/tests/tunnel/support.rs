//! Shared kit: session pairs over loopback TCP, a relay that can go silent, headers, data, polling once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use moat_tunnel::{AgentSession, EdgeSession, SessionSettings, StreamHeader};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Every test finishes within this, or fails naming it.
pub const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Runs a test body under [`TEST_LIMIT`].
pub async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test did not finish within 30 s")
}

/// A connected loopback TCP pair: (the edge's accepted socket, the agent's dialled socket).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let (accepted, dialled) = tokio::join!(listener.accept(), TcpStream::connect(address));
    (accepted.expect("accept").0, dialled.expect("connect"))
}

/// Both sides' handshakes over `edge_io` and `agent_io`, run together.
pub async fn handshake(
    edge_io: TcpStream,
    agent_io: TcpStream,
    settings: &SessionSettings,
) -> (EdgeSession, AgentSession) {
    let (edge, agent) = tokio::join!(
        EdgeSession::handshake(edge_io, settings),
        AgentSession::handshake(agent_io, settings)
    );
    (
        edge.expect("edge handshake"),
        agent.expect("agent handshake"),
    )
}

/// A session over a direct loopback TCP connection.
pub async fn session_pair(settings: &SessionSettings) -> (EdgeSession, AgentSession) {
    let (edge_io, agent_io) = tcp_pair().await;
    handshake(edge_io, agent_io, settings).await
}

/// A stream header for the public client number `n` of `endpoint`.
pub fn header(endpoint: &str, n: u16) -> StreamHeader {
    StreamHeader {
        endpoint: endpoint.to_owned(),
        client_addr: SocketAddr::from(([203, 0, 113, 7], 40_000 + n % 20_000)),
        server_addr: "192.0.2.1:443".parse().expect("address"),
        sni: Some(endpoint.to_owned()),
        terminated_at_edge: true,
        client_identity: None,
    }
}

/// `len` bytes that differ from any shifted or repeated copy of themselves (a xorshift
/// sequence), so that a lost, doubled or reordered chunk shows.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Polls `future` once with a waker that does nothing: "is it pending right now?", with
/// no timing involved.
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls one write of `data` to `stream` once, as [`poll_once`] does.
pub fn poll_write_once<W: AsyncWrite + Unpin>(
    stream: &mut W,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    Pin::new(stream).poll_write(&mut Context::from_waker(Waker::noop()), data)
}

/// A TCP relay between edge and agent whose directions can be silenced: a silenced
/// direction swallows what arrives and forwards nothing more, keeping both sockets open —
/// a peer or path that died without a FIN.
pub struct Relay {
    edge_to_agent: watch::Sender<bool>,
    agent_to_edge: watch::Sender<bool>,
}

impl Relay {
    /// A session through a relay: edge ⇄ relay ⇄ agent.
    pub async fn session(settings: &SessionSettings) -> (EdgeSession, AgentSession, Relay) {
        let (edge_io, edge_relay) = tcp_pair().await;
        let (relay_agent, agent_io) = tcp_pair().await;
        let (edge_to_agent, open_ea) = watch::channel(true);
        let (agent_to_edge, open_ae) = watch::channel(true);
        let (from_edge, to_edge) = edge_relay.into_split();
        let (from_agent, to_agent) = relay_agent.into_split();
        tokio::spawn(pump(from_edge, to_agent, open_ea));
        tokio::spawn(pump(from_agent, to_edge, open_ae));
        let (edge, agent) = handshake(edge_io, agent_io, settings).await;
        let relay = Relay {
            edge_to_agent,
            agent_to_edge,
        };
        (edge, agent, relay)
    }

    /// Stops forwarding from the agent to the edge.
    pub fn silence_agent_to_edge(&self) {
        self.agent_to_edge.send_replace(false);
    }

    /// Stops forwarding from the edge to the agent.
    pub fn silence_edge_to_agent(&self) {
        self.edge_to_agent.send_replace(false);
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, open: watch::Receiver<bool>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !*open.borrow() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Silent from now on, both sockets held open: not even a FIN goes through, so each side
    // can only learn of the other's death by its heartbeat.
    let _held = (from, to);
    std::future::pending().await
}
