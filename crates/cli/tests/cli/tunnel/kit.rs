//! A running edge, join tokens, joined agents and curl through the edge.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::gateway_support::{Moat, TestCa, Usage, curl, moat_output, write_pair};

/// A `moat edge` on loopback with its two addresses (three with `--metrics-listen`).
pub struct RunningEdge {
    pub _moat: Moat,
    pub agent_port: u16,
    pub public_port: u16,
    /// Where `/metrics` answers, when the edge was started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Starts `moat edge` in `dir` (MOAT_HOME dir/home) on free loopback ports, with `extra` flags.
pub fn start_edge(dir: &Path, extra: &[&str]) -> RunningEdge {
    let mut args = vec![
        "edge",
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "127.0.0.1:0",
        "--agent-name",
        "127.0.0.1",
        "--audit-log",
        "edge-audit.jsonl",
    ];
    args.extend_from_slice(extra);
    let moat = Moat::start(dir, &args, 0);
    let mut agent_port = None;
    let mut public_port = None;
    let mut metrics_addr = None;
    while agent_port.is_none() || public_port.is_none() {
        let line = moat
            .next_stdout_line(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the edge printed no listener line; log:\n{}", moat.log()));
        let port = || {
            line.rsplit(':')
                .next()
                .and_then(|port| port.trim().parse::<u16>().ok())
        };
        if line.starts_with("moat: edge agent listener on ") {
            agent_port = port();
        } else if line.starts_with("moat: edge public listener on ") {
            public_port = port();
        } else if let Some(address) = line.strip_prefix("moat: metrics listening on http://") {
            metrics_addr = address.trim().parse().ok();
        }
    }
    RunningEdge {
        _moat: moat,
        agent_port: agent_port.unwrap(),
        public_port: public_port.unwrap(),
        metrics_addr,
    }
}

/// Prints a join token with `moat edge token ARGS` in `dir` and writes it to `dir/NAME`.
pub fn make_token(dir: &Path, name: &str, args: &[&str]) -> String {
    let output = moat_output(dir, &[&["edge", "token"][..], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && stdout.starts_with("moat-join-1."),
        "moat edge token: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(dir.join(name), &stdout).unwrap();
    stdout
}

/// `moat agent join --token-file FILE` in `dir`: (success, stdout and stderr).
pub fn join(dir: &Path, token_file: &str) -> (bool, String) {
    let output = moat_output(dir, &["agent", "join", "--token-file", token_file]);
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Starts an agent publishing `kind UPSTREAM` through the edge with `extra` flags, and waits
/// for the edge to publish it; returns the process and the URL printed.
pub fn start_agent(
    dir: &Path,
    edge: &RunningEdge,
    kind: &str,
    upstream: &str,
    extra: &[&str],
) -> (Moat, String) {
    let edge_address = format!("127.0.0.1:{}", edge.agent_port);
    let mut args = vec![kind, upstream, "--edge", edge_address.as_str()];
    args.extend_from_slice(extra);
    let agent = Moat::start(dir, &args, 0);
    let url = loop {
        let line = agent
            .next_stdout_line(Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!("the agent printed no published line; log:\n{}", agent.log())
            });
        if let Some((_, url)) = line.split_once(" published at ") {
            break url.to_owned();
        }
        assert!(
            !line.contains("refused"),
            "the edge refused the endpoint: {line}"
        );
    };
    (agent, url)
}

/// The server certificate `server-HOST.crt`/`.key` for `hostname`, issued by `ca`.
pub fn server_certificate(dir: &Path, ca: &TestCa, hostname: &str, serial: u64) {
    write_pair(
        dir,
        &format!("server-{hostname}"),
        &ca.server_leaf_for(&[hostname], serial),
    );
}

/// A client certificate `NAME.crt`/`.key` issued by `ca`.
pub fn client_certificate(dir: &Path, ca: &TestCa, name: &str, serial: u64) {
    write_pair(dir, name, &ca.leaf(name, Usage::Client, serial));
}

/// curl to `https://HOST:PORT/PATH` through the edge, trusting `server-ca.crt`, with `identity`.
pub fn curl_through(
    dir: &Path,
    edge: &RunningEdge,
    host: &str,
    path: &str,
    identity: &[&str],
) -> (i32, String, String) {
    let resolve = format!("{host}:{}:127.0.0.1", edge.public_port);
    let url = format!("https://{host}:{}{path}", edge.public_port);
    let trust = ["--cacert", "server-ca.crt", "--resolve", resolve.as_str()];
    curl(dir, &[&trust[..], identity, &[url.as_str()]].concat())
}
