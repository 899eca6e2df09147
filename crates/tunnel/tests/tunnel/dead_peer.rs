//! Heartbeats: a peer that goes silent ends the session with PeerSilent; an idle live one does not.

use std::time::{Duration, Instant};

use moat_tunnel::{OpenError, SessionError, SessionSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Relay, bounded, header, poll_once};

fn quick_heartbeat() -> SessionSettings {
    SessionSettings {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_tolerance: Duration::from_millis(500),
        ..SessionSettings::default()
    }
}

fn assert_peer_silent(end: Result<(), SessionError>, side: &str, tolerance: Duration) {
    match end {
        Err(SessionError::PeerSilent { after }) => assert_eq!(after, tolerance),
        other => panic!("the {side} session should end with PeerSilent, got {other:?}"),
    }
}

/// The PING that goes unanswered was sent at most one interval before the silence began,
/// so the session may not end sooner than `tolerance - interval` after it.
fn assert_not_early(silenced: Instant, settings: &SessionSettings) {
    let earliest = settings.heartbeat_tolerance - settings.heartbeat_interval;
    let elapsed = silenced.elapsed();
    assert!(
        elapsed >= earliest,
        "ended {elapsed:?} after the silence, before {earliest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_going_silent_ends_the_edge_session() {
    bounded(async {
        let settings = quick_heartbeat();
        let (edge, agent, relay) = Relay::session(&settings).await;
        let silenced = Instant::now();
        relay.silence_agent_to_edge();
        assert_peer_silent(edge.closed().await, "edge", settings.heartbeat_tolerance);
        assert_not_early(silenced, &settings);
        // The agent's own PINGs went the silenced way too: it gives up as well.
        assert_peer_silent(agent.closed().await, "agent", settings.heartbeat_tolerance);
        // A stream after the end names why the session ended.
        let error = edge
            .open_stream(&header("app.example.com", 1))
            .await
            .expect_err("ended");
        assert!(
            matches!(error, OpenError::Session(SessionError::PeerSilent { .. })),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_going_silent_ends_the_agent_session() {
    bounded(async {
        let settings = quick_heartbeat();
        let (edge, mut agent, relay) = Relay::session(&settings).await;
        let silenced = Instant::now();
        relay.silence_edge_to_agent();
        assert_peer_silent(agent.closed().await, "agent", settings.heartbeat_tolerance);
        assert_not_early(silenced, &settings);
        assert!(
            agent.accept().await.is_none(),
            "an ended session accepts no stream"
        );
        assert_peer_silent(edge.closed().await, "edge", settings.heartbeat_tolerance);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_stays_up_on_heartbeats() {
    bounded(async {
        let settings = quick_heartbeat();
        let (edge, mut agent, _relay) = Relay::session(&settings).await;
        // Idle for four tolerances: the heartbeats, answered, keep both sides up.
        tokio::time::sleep(settings.heartbeat_tolerance * 4).await;
        assert!(
            poll_once(&mut Box::pin(edge.closed())).is_pending(),
            "edge ended while idle"
        );
        assert!(
            poll_once(&mut Box::pin(agent.closed())).is_pending(),
            "agent ended while idle"
        );
        let mut stream = edge
            .open_stream(&header("app.example.com", 1))
            .await
            .expect("open");
        stream.write_all(b"still here").await.expect("write");
        let (_, mut accepted) = agent.accept().await.expect("a stream");
        let mut word = [0; 10];
        accepted.read_exact(&mut word).await.expect("read");
        assert_eq!(&word, b"still here");
    })
    .await;
}
