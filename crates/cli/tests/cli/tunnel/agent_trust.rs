//! Whom the edge lets in as an agent: a token works only until it expires, and an agent whose
//! certificate is not from the agents' CAs is refused at the TLS handshake.

use std::time::Duration;

use super::kit::{
    join, joined_with_alice, make_token, start_agent_verdict, start_edge, start_edge_at,
};
use crate::gateway_support::{TestCa, start_http_upstream};

#[test]
fn an_expired_token_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let _edge = start_edge(dir, &[]);
    make_token(dir, "token", &["--grant", "*.tunnel.test", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (joined, output) = join(dir, "token");
    assert!(!joined, "an expired token joined: {output}");
    assert!(output.contains("expired"), "{output}");
    assert!(
        !dir.join("home/agent/agent.key").exists(),
        "credentials were written"
    );
}

#[test]
fn an_agent_certificate_from_another_ca_is_refused_at_the_handshake() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let mut edge = start_edge(dir, &[]);
    joined_with_alice(dir, "*.tunnel.test");
    // The same edge, now trusting only another CA's agents: the joined agent's certificate
    // (from the edge's own agent CA) no longer gets in.
    std::fs::write(
        dir.join("other-agents.pem"),
        TestCa::new("Other agents CA").pem,
    )
    .unwrap();
    let (public_port, agent_port) = (edge.public_port, edge.agent_port);
    edge.moat.terminate();
    edge.moat.wait_exit(Duration::from_secs(40));
    let edge = start_edge_at(
        dir,
        public_port,
        agent_port,
        &["--agent-cas", "other-agents.pem"],
    );

    let upstream = start_http_upstream().to_string();
    let (_agent, line) = start_agent_verdict(
        dir,
        "agent",
        agent_port,
        &upstream,
        &["--domain", "app.tunnel.test"],
    );
    assert!(
        line.starts_with("moat: disconnected from the edge"),
        "{line}"
    );
    assert!(
        line.contains("unknown ca") || line.contains("UnknownCA"),
        "{line}"
    );
    edge.moat.wait_for_log("agent connection refused");
}
