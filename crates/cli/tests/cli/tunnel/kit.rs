//! A running edge, join tokens, joined agents and curl through the edge.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::gateway_support::{
    Moat, TestCa, Usage, curl, moat_output, start_http_upstream, write_pair,
};

/// A `moat edge` on loopback with its two addresses (three with `--metrics-listen`).
pub struct RunningEdge {
    pub moat: Moat,
    pub agent_port: u16,
    pub public_port: u16,
    /// Where `/metrics` answers, when the edge was started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Starts `moat edge` in `dir` (MOAT_HOME dir/home) on free loopback ports, with `extra` flags.
pub fn start_edge(dir: &Path, extra: &[&str]) -> RunningEdge {
    start_edge_at(dir, 0, 0, extra)
}

/// [`start_edge`] on the given ports (0: a free one), e.g. to restart an edge where it was.
pub fn start_edge_at(dir: &Path, public_port: u16, agent_port: u16, extra: &[&str]) -> RunningEdge {
    let listen = format!("127.0.0.1:{public_port}");
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let mut args = vec![
        "edge",
        "--listen",
        listen.as_str(),
        "--agent-listen",
        agent_listen.as_str(),
        "--agent-name",
        "127.0.0.1",
        "--audit-log",
        "edge-audit.jsonl",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start_edge_with(dir, &args)
}

/// Starts `moat ARGS` (an edge: `edge ...`) in `dir` and waits for its two listener lines.
pub fn start_edge_with(dir: &Path, args: &[&str]) -> RunningEdge {
    let moat = Moat::start_logged(dir, "edge", args, 0);
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
        moat,
        agent_port: agent_port.unwrap(),
        public_port: public_port.unwrap(),
        metrics_addr,
    }
}

/// A log name no other agent of this test process has: `agent-N`.
pub fn next_agent_log() -> String {
    static AGENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    format!(
        "agent-{}",
        AGENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
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
    start_agent_with(dir, &args)
}

/// Starts `moat ARGS` (an agent) in `dir` and waits for the edge to publish its first
/// endpoint; returns the process and the URL printed.
pub fn start_agent_with(dir: &Path, args: &[&str]) -> (Moat, String) {
    let agent = Moat::start_logged(dir, &next_agent_log(), args, 0);
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
    curl_to(dir, edge.public_port, host, path, identity)
}

/// [`curl_through`] an edge known by its public port (for threads: the edge is not `Sync`).
pub fn curl_to(
    dir: &Path,
    public_port: u16,
    host: &str,
    path: &str,
    identity: &[&str],
) -> (i32, String, String) {
    let resolve = format!("{host}:{public_port}:127.0.0.1");
    let url = format!("https://{host}:{public_port}{path}");
    let trust = ["--cacert", "server-ca.crt", "--resolve", resolve.as_str()];
    curl(dir, &[&trust[..], identity, &[url.as_str()]].concat())
}

/// The JSON body the edge answers for `host` to a client without a certificate that does not
/// check the server's (`--insecure`): "endpoint offline" once nobody publishes it.
pub fn offline_answer(dir: &Path, edge: &RunningEdge, host: &str) -> String {
    let json = ["--insecure", "-H", "Accept: application/json"];
    curl_through(dir, edge, host, "/", &json).1
}

/// The PKI of a tunnel test directory, from [`joined_with_alice`].
pub struct TunnelPki {
    /// Signs the published endpoints' server certificates (`server-ca.crt`).
    pub server_ca: TestCa,
    /// The client CA the endpoints trust (`cas.pem`); alice's issuer.
    pub client_ca: TestCa,
}

/// Writes `server-ca.crt`, the client CA `cas.pem` and its client `alice` in `dir`, makes a join
/// token for `grant` and joins the agent whose credentials live in `dir`.
pub fn joined_with_alice(dir: &Path, grant: &str) -> TunnelPki {
    let server_ca = TestCa::new("Server CA");
    std::fs::write(dir.join("server-ca.crt"), &server_ca.pem).unwrap();
    let client_ca = TestCa::new("Client CA");
    std::fs::write(dir.join("cas.pem"), &client_ca.pem).unwrap();
    client_certificate(dir, &client_ca, "alice", 10);
    make_token(dir, "token", &["--grant", grant]);
    let (joined, output) = join(dir, "token");
    assert!(joined, "moat agent join: {output}");
    TunnelPki {
        server_ca,
        client_ca,
    }
}

/// The flags that publish `host` with the certificate `server-HOST.crt`/`.key` and the client
/// CAs `cas.pem`, followed by `extra`.
pub fn publish_flags(host: &str, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--domain".to_owned(),
        host.to_owned(),
        "--crt".to_owned(),
        format!("server-{host}.crt"),
        "--key".to_owned(),
        format!("server-{host}.key"),
        "--mutual-tls-cas".to_owned(),
        "cas.pem".to_owned(),
    ];
    flags.extend(extra.iter().map(|flag| flag.to_string()));
    flags
}

/// Starts `moat http UPSTREAM --edge 127.0.0.1:AGENT_PORT EXTRA...` in `dir` (logging to
/// `dir/LOG_NAME.log`) and returns it with the first line that tells how the edge took it:
/// published, refused, or disconnected.
pub fn start_agent_verdict(
    dir: &Path,
    log_name: &str,
    agent_port: u16,
    upstream: &str,
    extra: &[&str],
) -> (Moat, String) {
    let edge_address = format!("127.0.0.1:{agent_port}");
    let mut args = vec!["http", upstream, "--edge", edge_address.as_str()];
    args.extend_from_slice(extra);
    let agent = Moat::start_logged(dir, log_name, &args, 0);
    let verdict = std::iter::from_fn(|| agent.next_stdout_line(Duration::from_secs(30)))
        .find(|line| {
            line.contains(" published at ")
                || line.contains(" refused ")
                || line.contains("disconnected")
        })
        .unwrap_or_else(|| panic!("no answer from the edge; log:\n{}", agent.log()));
    (agent, verdict)
}

/// An edge (with `edge_flags` besides its domain `*.tunnel.test`), a joined agent publishing
/// `app.tunnel.test` at the edge in front of an HTTP upstream, and the upstream's address.
pub struct Published {
    pub edge: RunningEdge,
    pub agent: Moat,
    pub upstream: String,
    pub flags: Vec<String>,
}

pub fn publish_app(dir: &Path, edge_flags: &[&str]) -> Published {
    let edge = start_edge(
        dir,
        &[&["--domain", "*.tunnel.test"][..], edge_flags].concat(),
    );
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "app.tunnel.test", 20);
    let upstream = start_http_upstream().to_string();
    let flags = publish_flags("app.tunnel.test", &[]);
    let borrowed: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &borrowed);
    Published {
        edge,
        agent,
        upstream,
        flags,
    }
}
