//! An agent's life through an edge: the edge restarts, the agent freezes (a silent death), a pool
//! of two loses a member, and another agent tries to take a published hostname.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::kit::{
    Published, RunningEdge, curl_through, curl_to, joined_with_alice, make_token, offline_answer,
    publish_app, publish_flags, server_certificate, start_agent, start_agent_verdict, start_edge,
    start_edge_at,
};
use crate::gateway_support::{TestCa, start_observed_http_upstream, wait_until};

/// A directory with a server CA, a client CA with client `alice`, and a joined agent allowed
/// `grant`; returns the server CA.
fn setup(dir: &Path, grant: &str) -> TestCa {
    joined_with_alice(dir, grant).server_ca
}

/// curl as alice: (exit code, body).
fn as_alice(dir: &Path, edge: &RunningEdge, host: &str, path: &str) -> (i32, String) {
    let (code, body, _) = curl_through(
        dir,
        edge,
        host,
        path,
        &["--cert", "alice.crt", "--key", "alice.key"],
    );
    (code, body)
}

#[test]
fn the_agent_reconnects_by_itself_after_the_edge_restarts() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let Published {
        mut edge, agent, ..
    } = publish_app(dir, &[]);
    assert_eq!(
        as_alice(dir, &edge, "app.tunnel.test", "/a"),
        (0, "hello from upstream /a".to_owned())
    );

    let (public_port, agent_port) = (edge.public_port, edge.agent_port);
    edge.moat.terminate();
    edge.moat.wait_exit(Duration::from_secs(40));
    let edge = start_edge_at(dir, public_port, agent_port, &["--domain", "*.tunnel.test"]);
    wait_until(
        "the agent serves again through the restarted edge",
        Duration::from_secs(30),
        || {
            as_alice(dir, &edge, "app.tunnel.test", "/b")
                == (0, "hello from upstream /b".to_owned())
        },
    );
    // What the agent uploaded to the first run is gone: only the new session's upload is left.
    let uploads: Vec<_> = std::fs::read_dir(dir.join("home/edge/uploads"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let told = std::iter::from_fn(|| agent.next_stdout_line(Duration::from_secs(5)))
        .find(|line| line.starts_with("moat: disconnected from the edge"));
    assert!(
        told.is_some(),
        "the agent said nothing of the lost edge; log:\n{}",
        agent.log()
    );
}

#[test]
fn a_frozen_agent_is_dropped_after_the_heartbeat_tolerance_and_comes_back_when_it_thaws() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let Published { edge, agent, .. } = publish_app(dir, &["--heartbeat-tolerance", "1s"]);
    assert_eq!(as_alice(dir, &edge, "app.tunnel.test", "/").0, 0);

    // SIGSTOP: the socket stays open but nothing answers, as when a cable is cut.
    agent.signal("STOP");
    let offline =
        || offline_answer(dir, &edge, "app.tunnel.test").contains("\"code\":\"endpoint_offline\"");
    // The edge pings every 5 s and gives up 1 s after an unanswered one.
    wait_until(
        "the silent agent's endpoint goes offline",
        Duration::from_secs(20),
        offline,
    );
    edge.moat.wait_for_log("heartbeat");

    agent.signal("CONT");
    wait_until(
        "the thawed agent publishes again",
        Duration::from_secs(30),
        || {
            as_alice(dir, &edge, "app.tunnel.test", "/again")
                == (0, "hello from upstream /again".to_owned())
        },
    );
}

#[test]
fn a_pool_shares_new_connections_and_loses_a_killed_member_without_failing_requests() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = setup(dir, "*.tunnel.test");
    server_certificate(dir, &server_ca, "pool.tunnel.test", 20);
    let (first_upstream, first_count) = start_observed_http_upstream();
    let (second_upstream, second_count) = start_observed_http_upstream();
    let flags = publish_flags("pool.tunnel.test", &["--pool"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (mut first, _) = start_agent(dir, &edge, "http", &first_upstream.to_string(), &flags);
    let (_second, _) = start_agent(dir, &edge, "http", &second_upstream.to_string(), &flags);

    // Eight requests at once need eight upstream connections: each goes to the member with
    // the fewest open streams.
    let public_port = edge.public_port;
    std::thread::scope(|scope| {
        for n in 0..8 {
            scope.spawn(move || {
                let alice = ["--cert", "alice.crt", "--key", "alice.key"];
                let (code, body, _) =
                    curl_to(dir, public_port, "pool.tunnel.test", "/slow", &alice);
                assert_eq!(
                    (code, body.as_str()),
                    (0, "hello from upstream /slow"),
                    "request {n}"
                );
            });
        }
    });
    let (first_served, second_served) = (
        first_count.load(Ordering::SeqCst),
        second_count.load(Ordering::SeqCst),
    );
    assert!(
        first_served >= 2 && second_served >= 2,
        "served {first_served} and {second_served}"
    );

    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    edge.moat.wait_for_log("its agent disconnected");
    let before = second_count.load(Ordering::SeqCst);
    for n in 0..10 {
        let path = format!("/after-{n}");
        assert_eq!(
            as_alice(dir, &edge, "pool.tunnel.test", &path),
            (0, format!("hello from upstream {path}")),
            "request {n} after the member died"
        );
    }
    assert_eq!(second_count.load(Ordering::SeqCst) - before, 10);
}

#[test]
fn another_agent_cannot_take_a_published_hostname() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let Published {
        edge,
        agent: _owner,
        upstream,
        flags,
    } = publish_app(dir, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    // A second agent, joined with its own token and name, in its own directory.
    let other_scratch = tempfile::tempdir().unwrap();
    let other = other_scratch.path();
    for file in [
        "server-app.tunnel.test.crt",
        "server-app.tunnel.test.key",
        "cas.pem",
    ] {
        std::fs::copy(dir.join(file), other.join(file)).unwrap();
    }
    let token = make_token(dir, "token-2", &["--grant", "*.tunnel.test"]);
    std::fs::write(other.join("token"), token).unwrap();
    let output = crate::gateway_support::moat_output(
        other,
        &[
            "agent",
            "join",
            "--token-file",
            "token",
            "--name",
            "intruder",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_intruder, line) =
        start_agent_verdict(other, "intruder", edge.agent_port, &upstream, &flags);
    assert!(
        line.contains("refused") && line.contains("app.tunnel.test is published by agent"),
        "{line}"
    );
    // The owner still serves it.
    assert_eq!(
        as_alice(dir, &edge, "app.tunnel.test", "/x"),
        (0, "hello from upstream /x".to_owned())
    );
}
