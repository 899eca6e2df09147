//! The agent listener: agents join (a token for a certificate) or open their session, publish
//! endpoints over its control channel, and lose them when the session ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use moat_edge::Arrival;
use moat_telemetry::AgentDisconnect;
use moat_trust::ClientIdentity;
use moat_tunnel::{
    AgentMessage, ControlError, EdgeSession, SessionError, SessionSettings, StreamOpener,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::registry::{AgentLink, Registry};

/// How long an agent has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a failed control channel waits for the session to say why it ended.
const SESSION_END_GRACE: Duration = Duration::from_millis(500);

/// Accepts agents until `stopping` turns true, then ends their sessions.
pub(crate) async fn serve_agents(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut agents = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let registry = Arc::clone(&registry);
                    agents.spawn(serve_connection(tcp, peer, acceptor, registry));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot accept an agent connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = agents.join_next() => {}
            _ = stopped(&mut stopping) => break,
        }
    }
    // Sessions end with the edge: agents see the connection close and reconnect elsewhere.
    agents.shutdown().await;
}

/// One agent connection: a join, or a session.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
) {
    match moat_edge::accept(&acceptor, tcp, HANDSHAKE_TIMEOUT).await {
        Ok(Arrival::Join(stream)) => {
            match moat_edge::serve_join(stream, Arc::clone(registry.state())).await {
                Ok(agent) => tracing::info!(
                    agent = %agent.agent_name.as_str(),
                    serial = %agent.serial,
                    address = %peer,
                    "agent joined"
                ),
                Err(error) => tracing::warn!(address = %peer, %error, "agent join refused"),
            }
        }
        Ok(Arrival::Tunnel { agent, stream }) => {
            run_session(registry, *agent, stream, peer).await;
        }
        Err(error) => tracing::warn!(address = %peer, %error, "agent connection refused"),
    }
}

/// Serves one agent's session until it ends; then its endpoints are withdrawn.
async fn run_session<S>(
    registry: Arc<Registry>,
    identity: ClientIdentity,
    stream: S,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let settings = SessionSettings {
        heartbeat_tolerance: registry.settings().heartbeat_tolerance,
        ..SessionSettings::default()
    };
    let name = identity
        .common_name
        .clone()
        .unwrap_or_else(|| identity.subject.clone());
    let session = match EdgeSession::handshake(stream, &settings).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(agent = %name, address = %peer, %error, "agent session refused");
            return;
        }
    };
    let (opener, mut control) = session.into_parts();
    let session = match moat_edge::record_id("ts") {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(agent = %name, %error, "cannot name the agent's session");
            return;
        }
    };
    let (notices, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let link = Arc::new(AgentLink {
        id: registry.next_link_id(),
        name,
        identity,
        address: peer,
        opener: opener.clone(),
        open_streams: AtomicUsize::new(0),
        session,
        recorded: AtomicBool::new(false),
        ended: Notify::new(),
        notices,
    });
    registry.open_session(&link).await;
    tracing::info!(agent = %link.name, address = %peer, session = %link.session, "agent connected");
    let telemetry = registry.telemetry().clone();
    telemetry.agent_connected(&link.name, peer, &link.identity.serial_hex);
    let (ending, reason) = loop {
        tokio::select! {
            message = control.recv() => match message {
                Ok(Some(AgentMessage::Register { endpoints })) => {
                    // A grant or definition made a moment ago on another edge counts.
                    if let Ok(true) = registry.control().refresh().await {
                        let registry = Arc::clone(&registry);
                        let _ = tokio::task::spawn_blocking(move || registry.reconcile()).await;
                    }
                    let answers = {
                        let registry = Arc::clone(&registry);
                        let link = Arc::clone(&link);
                        // Registration loads certificates and files: off the async workers.
                        tokio::task::spawn_blocking(move || registry.register(&link, endpoints)).await
                    };
                    let Ok(answers) = answers else {
                        break (AgentDisconnect::Error, "registration failed inside the edge".to_owned());
                    };
                    for answer in answers {
                        if let Err(error) = control.send(&answer).await {
                            tracing::warn!(agent = %link.name, %error, "cannot answer the agent");
                        }
                    }
                }
                Ok(Some(AgentMessage::Remove { hostnames })) => {
                    let registry = Arc::clone(&registry);
                    let link = Arc::clone(&link);
                    let _ = tokio::task::spawn_blocking(move || registry.withdraw(&link, &hostnames)).await;
                }
                Ok(Some(AgentMessage::Hello(_))) => {}
                Ok(None) => break (AgentDisconnect::Closed, "the agent closed its session".to_owned()),
                Err(error) => break control_failed(&opener, error).await,
            },
            ended = opener.closed() => break session_ended(ended),
            Some(notice) = notes.recv() => {
                if let Err(error) = control.send(&notice).await {
                    tracing::warn!(agent = %link.name, %error, "cannot tell the agent");
                }
            }
            () = link.ended.notified() => break (
                AgentDisconnect::Operator,
                "an operator ended the session".to_owned(),
            ),
        }
    };
    registry.close_session(&link).await;
    tracing::info!(agent = %link.name, address = %peer, reason = %reason, "agent disconnected");
    telemetry.agent_disconnected(&link.name, peer, ending, &reason);
    let registry_for_cleanup = Arc::clone(&registry);
    let link_for_cleanup = Arc::clone(&link);
    let _ = tokio::task::spawn_blocking(move || {
        registry_for_cleanup.disconnect(&link_for_cleanup, &reason)
    })
    .await;
}

/// Why the session ended, from how it ended.
fn session_ended(ended: Result<(), SessionError>) -> (AgentDisconnect, String) {
    match ended {
        Ok(()) => (
            AgentDisconnect::Closed,
            "the agent closed its session".to_owned(),
        ),
        // The session's driver ended without a failure to report.
        Err(error @ SessionError::Closed) => (AgentDisconnect::Closed, error.to_string()),
        Err(error @ SessionError::PeerSilent { .. }) => {
            (AgentDisconnect::HeartbeatTimeout, error.to_string())
        }
        Err(error) => (AgentDisconnect::Error, error.to_string()),
    }
}

/// Why the session ended when its control channel failed: the session's own end when it has
/// one (a heartbeat timeout reaches the channel only as a broken pipe), else the channel's error.
async fn control_failed(opener: &StreamOpener, error: ControlError) -> (AgentDisconnect, String) {
    match tokio::time::timeout(SESSION_END_GRACE, opener.closed()).await {
        Ok(ended) => session_ended(ended),
        Err(_) => (AgentDisconnect::Error, format!("control channel: {error}")),
    }
}

/// Resolves once `stopping` turns true (or its sender is gone); the guard `wait_for` returns is
/// not `Send`, so it is dropped here rather than held across the caller's `select!`.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
