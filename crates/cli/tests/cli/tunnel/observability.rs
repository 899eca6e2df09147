//! What an edge reports of its agents: audit events when an agent connects, publishes, dies and
//! loses its endpoints, and metrics that follow (agents, endpoints, tunnel streams, and the
//! expiry of what the agent uploaded, gone with it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::kit::{
    curl_through, join, joined_with_alice, make_token, publish_flags, server_certificate,
    start_agent, start_edge,
};
use crate::gateway_support::{start_http_upstream, wait_until};

const HOST: &str = "app.tunnel.test";

/// `/metrics` of the edge, fetched with a plain HTTP/1.0 GET.
fn metrics(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: moat\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample named `name` with exactly `labels` (`name{labels}`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The expiry series of what the agent uploaded for `HOST`.
fn uploaded_expiry_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            line.starts_with("moat_certificate_expiry_timestamp_seconds{")
                && line.contains(&format!("endpoint=\"{HOST}\""))
        })
        .collect()
}

/// The audit events the edge wrote so far, parsed.
fn audit_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("edge-audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The audit events named `name`.
fn events_named(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    audit_events(dir)
        .into_iter()
        .filter(|event| event["event"] == name)
        .collect()
}

#[test]
fn the_edge_audits_and_counts_its_agents_and_forgets_their_uploads_when_they_die() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(
        dir,
        &[
            "--domain",
            "*.tunnel.test",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics_addr = edge
        .metrics_addr
        .expect("the edge printed its metrics address");
    // Before any agent, an edge exports its gauges at zero.
    let text = metrics(metrics_addr);
    assert_eq!(
        sample(&text, "moat_edge_agents_connected"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moat_edge_endpoints_published"),
        Some(0.0),
        "{text}"
    );

    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, HOST, 20);

    let upstream = start_http_upstream().to_string();
    let publish = publish_flags(HOST, &[]);
    let publish: Vec<&str> = publish.iter().map(String::as_str).collect();
    let (mut agent, _) = start_agent(dir, &edge, "http", &upstream, &publish);

    wait_until(
        "the edge audits the agent and its endpoint",
        Duration::from_secs(10),
        || {
            !events_named(dir, "agent_connected").is_empty()
                && !events_named(dir, "endpoint_published").is_empty()
        },
    );
    let connected = &events_named(dir, "agent_connected")[0];
    let agent_name = connected["agent"].as_str().unwrap().to_owned();
    assert!(!agent_name.is_empty(), "{connected}");
    assert!(
        connected["agent_address"]
            .as_str()
            .is_some_and(|address| address.starts_with("127.0.0.1:")),
        "{connected}"
    );
    assert!(
        connected["agent_serial"].as_str().is_some_and(
            |serial| !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit())
        ),
        "{connected}"
    );
    assert!(connected["time"].as_str().is_some(), "{connected}");
    let published = &events_named(dir, "endpoint_published")[0];
    assert_eq!(published["hostname"], HOST, "{published}");
    assert_eq!(published["agent"], agent_name.as_str(), "{published}");
    assert_eq!(published["kind"], "http", "{published}");
    assert_eq!(published["terminate_at"], "edge", "{published}");
    assert_eq!(published["pool"], false, "{published}");

    // A request through the tunnel opens a stream for the endpoint.
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    let (code, body, stderr) = curl_through(dir, &edge, HOST, "/hello", &alice);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /hello"),
        "{stderr}"
    );

    let text = metrics(metrics_addr);
    assert_eq!(
        sample(&text, "moat_edge_agents_connected"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moat_edge_endpoints_published"),
        Some(1.0),
        "{text}"
    );
    let streams = format!("moat_tunnel_streams_open{{endpoint=\"{HOST}\"}}");
    assert!(sample(&text, &streams).is_some(), "{text}");
    // The client CA the agent uploaded is watched for expiry like any endpoint's.
    let uploaded = uploaded_expiry_series(&text);
    assert!(
        uploaded
            .iter()
            .any(|line| line.contains("kind=\"ca\"") && line.contains("Client CA")),
        "{text}"
    );

    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(10));
    wait_until(
        "the edge audits the agent's end and its endpoint's removal",
        Duration::from_secs(20),
        || {
            !events_named(dir, "agent_disconnected").is_empty()
                && !events_named(dir, "endpoint_removed").is_empty()
        },
    );
    let disconnected = &events_named(dir, "agent_disconnected")[0];
    assert_eq!(disconnected["agent"], agent_name.as_str(), "{disconnected}");
    assert_eq!(
        disconnected["agent_address"], connected["agent_address"],
        "{disconnected}"
    );
    // Killed, the agent never closed its TLS session: the edge saw the connection fail.
    assert_eq!(disconnected["reason"], "error", "{disconnected}");
    assert!(disconnected["detail"].as_str().is_some(), "{disconnected}");
    let removed = &events_named(dir, "endpoint_removed")[0];
    assert_eq!(removed["hostname"], HOST, "{removed}");
    assert_eq!(removed["agent"], agent_name.as_str(), "{removed}");
    assert_eq!(removed["reason"], "agent_disconnected", "{removed}");
    // In the order they happened.
    let order: Vec<String> = audit_events(dir)
        .iter()
        .filter_map(|event| event["event"].as_str().map(str::to_owned))
        .filter(|name| name.starts_with("agent_") || name.starts_with("endpoint_"))
        .collect();
    assert_eq!(
        order,
        [
            "agent_connected",
            "endpoint_published",
            "agent_disconnected",
            "endpoint_removed"
        ]
    );

    let mut text = String::new();
    wait_until(
        "the gauges follow the agent out",
        Duration::from_secs(20),
        || {
            text = metrics(metrics_addr);
            sample(&text, "moat_edge_agents_connected") == Some(0.0)
                && sample(&text, "moat_edge_endpoints_published") == Some(0.0)
                && sample(&text, &streams) == Some(0.0)
        },
    );
    // Nothing of what the agent uploaded is watched any more.
    assert!(uploaded_expiry_series(&text).is_empty(), "{text}");
}

#[test]
fn an_agent_that_stops_cleanly_is_audited_as_closed_and_its_endpoint_as_removed() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    make_token(dir, "token", &["--grant", "*.tunnel.test"]);
    let (joined, output) = join(dir, "token");
    assert!(joined, "moat agent join: {output}");
    let upstream = start_http_upstream().to_string();
    let (mut agent, _) = start_agent(dir, &edge, "http", &upstream, &["--domain", HOST]);

    agent.signal("TERM");
    agent.wait_exit(Duration::from_secs(10));
    wait_until(
        "the edge audits the agent's clean end",
        Duration::from_secs(10),
        || !events_named(dir, "endpoint_removed").is_empty(),
    );
    let disconnected = events_named(dir, "agent_disconnected");
    assert_eq!(disconnected.len(), 1, "{disconnected:?}");
    assert_eq!(disconnected[0]["reason"], "closed", "{}", disconnected[0]);
    let removed = &events_named(dir, "endpoint_removed")[0];
    assert_eq!(removed["hostname"], HOST, "{removed}");
    assert_eq!(removed["reason"], "agent_disconnected", "{removed}");
}

#[test]
fn a_silent_agent_is_audited_as_a_heartbeat_timeout() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(
        dir,
        &["--domain", "*.tunnel.test", "--heartbeat-tolerance", "1s"],
    );
    make_token(dir, "token", &["--grant", "*.tunnel.test"]);
    let (joined, output) = join(dir, "token");
    assert!(joined, "moat agent join: {output}");
    let upstream = start_http_upstream().to_string();
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &["--domain", HOST]);

    // Stopped, the agent's connection stays open but answers no PING.
    agent.signal("STOP");
    wait_until(
        "the edge gives up on the silent agent",
        Duration::from_secs(20),
        || !events_named(dir, "endpoint_removed").is_empty(),
    );
    let disconnected = events_named(dir, "agent_disconnected");
    assert_eq!(disconnected.len(), 1, "{disconnected:?}");
    assert_eq!(
        disconnected[0]["reason"], "heartbeat_timeout",
        "{}",
        disconnected[0]
    );
    agent.signal("KILL");
}
