//! Publishing an http endpoint through an edge, TLS ending at the edge or at the agent: the
//! same verdicts as a local gateway (alerts, 403 naming the rule), and "endpoint offline" once
//! the agent is gone.

use std::path::Path;
use std::time::Duration;

use super::kit::{
    RunningEdge, TunnelPki, client_certificate, curl_through, join, joined_with_alice,
    offline_answer, publish_flags, server_certificate, start_agent, start_agent_verdict,
    start_edge,
};
use crate::gateway_support::{TestCa, start_http_upstream, wait_until};

const POLICY: &str = r#"
[[rules]]
name = "no-admin"
paths = ["/admin/*"]
action = "deny"

[[rules]]
name = "clients"
action = "allow"
include = [{ common_name = "alice" }]
"#;

/// A test directory with a server CA (`server-ca.crt`), a client CA (`cas.pem`) with client
/// `alice`, a foreign CA's client `mallory`, the policy above, and a joined agent.
fn joined_setup(dir: &Path, edge: &RunningEdge, grant: &str) -> TestCa {
    let _ = edge;
    let pki = joined_with_alice(dir, grant);
    client_certificate(dir, &TestCa::new("Foreign CA"), "mallory", 11);
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    pki.server_ca
}

/// Checks the verdicts a protected endpoint gives through the edge at `host`.
fn assert_mtls_verdicts(dir: &Path, edge: &RunningEdge, host: &str) {
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    // A request naming another host than the connection's SNI is not served, whatever that
    // host is (another published endpoint, the edge's own domain): rules judged one endpoint.
    for other in ["elsewhere.tunnel.test", "app.agent.test", "app.tunnel.test"]
        .into_iter()
        .filter(|other| *other != host)
    {
        let forged_host = format!("Host: {other}:{}", edge.public_port);
        let misdirected = [
            &alice[..],
            &["-H", forged_host.as_str(), "-w", "%{http_code}"],
        ]
        .concat();
        let (code, body, stderr) = curl_through(dir, edge, host, "/hello", &misdirected);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            body.ends_with("421") && !body.contains("hello from upstream"),
            "SNI {host}, Host {other}: {body}"
        );
    }
    let (code, body, stderr) = curl_through(dir, edge, host, "/hello", &alice);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /hello"),
        "{stderr}"
    );

    // With access rules the rules decide, as on a local gateway: no certificate is a 403
    // naming the rule that wants one.
    let json_only = ["-H", "Accept: application/json"];
    let (code, body, stderr) = curl_through(dir, edge, host, "/hello", &json_only);
    assert_eq!(code, 0, "no certificate: {stderr}");
    assert!(
        body.contains("\"code\":\"client_certificate_required\"")
            && body.contains("\"rule\":\"clients\""),
        "no certificate: {body}"
    );

    let mallory = ["--cert", "mallory.crt", "--key", "mallory.key"];
    let (code, _, stderr) = curl_through(dir, edge, host, "/hello", &mallory);
    assert_ne!(code, 0, "a foreign CA's client: {stderr}");
    assert!(stderr.contains("alert unknown ca"), "{stderr}");

    let json = [&alice[..], &["-H", "Accept: application/json"]].concat();
    let (code, body, stderr) = curl_through(dir, edge, host, "/admin/x", &json);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        body.contains("\"status\":403") && body.contains("\"rule\":\"no-admin\""),
        "{body}"
    );
}

#[test]
fn an_endpoint_terminated_at_the_edge_is_judged_there_and_goes_offline_with_its_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = joined_setup(dir, &edge, "*.tunnel.test");
    server_certificate(dir, &server_ca, "app.tunnel.test", 20);
    let upstream = start_http_upstream().to_string();
    let publish = [
        "--domain",
        "app.tunnel.test",
        "--crt",
        "server-app.tunnel.test.crt",
        "--key",
        "server-app.tunnel.test.key",
        "--mutual-tls-cas",
        "cas.pem",
        "--policy",
        "policy.toml",
    ];
    let (mut agent, url) = start_agent(dir, &edge, "http", &upstream, &publish);
    assert_eq!(url, format!("https://app.tunnel.test:{}", edge.public_port));
    assert_mtls_verdicts(dir, &edge, "app.tunnel.test");
    // The edge judged it: its audit stream has the refusal and the request.
    let audit = || std::fs::read_to_string(dir.join("edge-audit.jsonl")).unwrap_or_default();
    wait_until(
        "the edge audits the refusals",
        Duration::from_secs(10),
        || {
            let audit = audit();
            audit.contains("\"reason\":\"unknown_ca\"") && audit.contains("\"rule\":\"no-admin\"")
        },
    );

    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(10));
    let offline = || offline_answer(dir, &edge, "app.tunnel.test");
    wait_until("the endpoint goes offline", Duration::from_secs(20), || {
        offline().contains("\"code\":\"endpoint_offline\"")
    });
    let body = offline();
    assert!(
        body.contains("\"status\":404") && body.contains("app.tunnel.test"),
        "{body}"
    );
    // What the agent uploaded is gone from the edge.
    let uploads = dir.join("home/edge/uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "uploads left: {left:?}");

    // Started again, the agent publishes the hostname again.
    let (_agent, _) = start_agent(dir, &edge, "http", &upstream, &publish);
    assert_mtls_verdicts(dir, &edge, "app.tunnel.test");
}

#[test]
fn an_endpoint_terminated_at_the_agent_is_relayed_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // No --domain: the edge has no certificate for anything; it can only relay.
    let edge = start_edge(dir, &[]);
    let server_ca = joined_setup(dir, &edge, "*.agent.test");
    server_certificate(dir, &server_ca, "app.agent.test", 21);
    let upstream = start_http_upstream().to_string();
    let publish = [
        "--terminate-at",
        "agent",
        "--domain",
        "app.agent.test",
        "--crt",
        "server-app.agent.test.crt",
        "--key",
        "server-app.agent.test.key",
        "--mutual-tls-cas",
        "cas.pem",
        "--policy",
        "policy.toml",
        // Its loopback listener would be the one socket: the count below is the gateway's.
        "--inspect",
        "off",
    ];
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &publish);
    assert_mtls_verdicts(dir, &edge, "app.agent.test");
    // The agent judged it, with the client's real address from the stream header.
    let log = agent.log();
    assert!(log.contains("peer=127.0.0.1:"), "{log}");
    // The agent listens on no port: its gateway takes clients from the tunnel only (the
    // inspector, when on, listens on loopback only).
    assert_eq!(
        listening_sockets(agent.pid()),
        0,
        "the agent listens on a port"
    );
    // The edge holds no key for the hostname.
    let edge_files = walk(&dir.join("home/edge"));
    assert!(
        !edge_files.iter().any(|path| path.ends_with("server.key")),
        "{edge_files:?}"
    );
    // A name nobody publishes is refused at the handshake.
    let (code, _, stderr) = curl_through(dir, &edge, "other.agent.test", "/", &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unrecognized name"), "{stderr}");
}

#[test]
fn a_token_joins_once_and_a_hostname_outside_the_grant_is_refused_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    joined_setup(dir, &edge, "*.mine.tunnel.test");
    let (joined, output) = join(dir, "token");
    assert!(!joined, "a used token joined again: {output}");
    assert!(output.contains("used"), "{output}");

    let upstream = start_http_upstream().to_string();
    let (_agent, line) = start_agent_verdict(
        dir,
        "agent",
        edge.agent_port,
        &upstream,
        &["--domain", "theirs.tunnel.test"],
    );
    assert!(
        line.contains("may not publish") && line.contains("*.mine.tunnel.test"),
        "{line}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn alerts_and_identity_headers_are_the_gateways_at_the_edge_and_at_the_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let TunnelPki {
        server_ca,
        client_ca,
    } = joined_with_alice(dir, "*.tunnel.test");
    client_certificate(dir, &client_ca, "revoked", 12);
    std::fs::write(dir.join("crl.pem"), client_ca.crl(&[12]).0).unwrap();
    client_certificate(dir, &TestCa::new("Foreign CA"), "mallory", 11);
    let upstream = start_http_upstream().to_string();
    for (terminate_at, host, serial) in [
        ("edge", "edge.tunnel.test", 30),
        ("agent", "agent.tunnel.test", 31),
    ] {
        server_certificate(dir, &server_ca, host, serial);
        let flags = publish_flags(host, &["--terminate-at", terminate_at, "--crl", "crl.pem"]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (_agent, _) = start_agent(dir, &edge, "http", &upstream, &flags);

        let (code, _, stderr) = curl_through(dir, &edge, host, "/", &[]);
        assert_eq!(code, 56, "{terminate_at}: no certificate: {stderr}");
        assert!(
            stderr.contains("alert certificate required"),
            "{terminate_at}: {stderr}"
        );
        let revoked = ["--cert", "revoked.crt", "--key", "revoked.key"];
        let (code, _, stderr) = curl_through(dir, &edge, host, "/", &revoked);
        assert_ne!(code, 0, "{terminate_at}: a revoked client");
        assert!(
            stderr.contains("alert certificate revoked"),
            "{terminate_at}: {stderr}"
        );
        let mallory = ["--cert", "mallory.crt", "--key", "mallory.key"];
        let (_, _, stderr) = curl_through(dir, &edge, host, "/", &mallory);
        assert!(
            stderr.contains("alert unknown ca"),
            "{terminate_at}: {stderr}"
        );

        // The upstream sees alice's identity, never the copy she sent herself.
        let spoofing = [
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            "-H",
            "Moat-Client-Subject: CN=admin",
            "-H",
            "Client-Cert: :Zm9v:",
        ];
        let (code, headers, stderr) = curl_through(dir, &edge, host, "/headers", &spoofing);
        assert_eq!(code, 0, "{terminate_at}: {stderr}");
        assert!(
            headers.contains("moat-client-subject: CN=alice\n"),
            "{terminate_at}: {headers}"
        );
        assert!(
            !headers.contains("CN=admin") && !headers.contains(":Zm9v:"),
            "{terminate_at}: {headers}"
        );
    }
}

#[test]
fn client_auth_request_lets_the_handshake_finish_at_the_edge_and_answers_403() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = joined_setup(dir, &edge, "*.tunnel.test");
    server_certificate(dir, &server_ca, "optional.tunnel.test", 40);
    let upstream = start_http_upstream().to_string();
    let publish = [
        "--domain",
        "optional.tunnel.test",
        "--crt",
        "server-optional.tunnel.test.crt",
        "--key",
        "server-optional.tunnel.test.key",
        "--mutual-tls-cas",
        "cas.pem",
        "--client-auth",
        "request",
    ];
    let (_agent, _) = start_agent(dir, &edge, "http", &upstream, &publish);
    let json = ["-H", "Accept: application/json"];
    let (code, body, stderr) = curl_through(dir, &edge, "optional.tunnel.test", "/", &json);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        body.contains("\"status\":403") && body.contains("client_certificate_required"),
        "{body}"
    );
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    let (code, body, stderr) = curl_through(dir, &edge, "optional.tunnel.test", "/ok", &alice);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /ok"),
        "{stderr}"
    );
}

/// How many TCP sockets process `pid` listens on (from /proc: its socket descriptors' inodes
/// among the LISTEN entries of /proc/net/tcp and tcp6).
fn listening_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state (0A: LISTEN), field 9 the inode.
            fields.get(3) == Some(&"0A")
                && fields
                    .get(9)
                    .is_some_and(|inode| inodes.iter().any(|own| own == inode))
        })
        .count()
}
