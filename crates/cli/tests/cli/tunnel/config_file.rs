//! The edge and the agent from moat.toml: `moat edge --config FILE` runs its `[edge]` table
//! (grants included), and `moat start --config FILE --all` publishes the `publish = true`
//! endpoints through the edge of its `[agent]` table.

use std::time::Duration;

use super::kit::{
    client_certificate, curl_through, make_token, server_certificate, start_agent_with,
    start_edge_with,
};
use crate::gateway_support::{TestCa, moat_output, start_http_upstream, wait_until};

#[test]
fn an_edge_and_an_agent_run_from_their_tables_and_serve_through_the_tunnel() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // The hostname is outside the edge's domain and the token grants nothing: only the file's
    // [[edge.grants]] lets the agent (named ci-1) publish it.
    std::fs::write(
        dir.join("edge.toml"),
        r#"
audit_log = "edge-audit.jsonl"

[edge]
listen = "127.0.0.1:0"
agent_listen = "127.0.0.1:0"
agent_names = ["127.0.0.1"]
domain = "*.tunnel.test"
heartbeat_tolerance = "10s"
admin_listen = "127.0.0.1:0"

[[edge.grants]]
agents = "ci-*"
hostnames = ["*.ci.test"]
"#,
    )
    .unwrap();
    let edge = start_edge_with(dir, &["edge", "--config", "edge.toml"]);
    make_token(dir, "token", &[]);
    let output = moat_output(
        dir,
        &["agent", "join", "--token-file", "token", "--name", "ci-1"],
    );
    assert!(
        output.status.success(),
        "moat agent join: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let server_ca = TestCa::new("Server CA");
    std::fs::write(dir.join("server-ca.crt"), &server_ca.pem).unwrap();
    server_certificate(dir, &server_ca, "app.ci.test", 20);
    let client_ca = TestCa::new("Client CA");
    std::fs::write(dir.join("cas.pem"), &client_ca.pem).unwrap();
    client_certificate(dir, &client_ca, "alice", 10);
    let upstream = start_http_upstream();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"
[agent]
edge = "127.0.0.1:{port}"

[[endpoints]]
name = "app"
kind = "http"
upstream = "http://{upstream}"
domain = "app.ci.test"
crt = "server-app.ci.test.crt"
key = "server-app.ci.test.key"
mutual_tls_cas = ["cas.pem"]
publish = true

# Written here rather than in a policy file: the agent sends them to the edge, which enforces them.
[[endpoints.rules]]
name = "no-admin"
paths = ["/admin/*"]
action = "deny"

[[endpoints.rules]]
name = "clients"
action = "allow"
include = [{{ common_name = "alice" }}]
"#,
            port = edge.agent_port
        ),
    )
    .unwrap();
    let check = moat_output(dir, &["config", "check", "agent.toml"]);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("agent: edge 127.0.0.1:"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let (_agent, url) = start_agent_with(dir, &["start", "--config", "agent.toml", "--all"]);
    assert_eq!(url, format!("https://app.ci.test:{}", edge.public_port));
    let alice = ["--cert", "alice.crt", "--key", "alice.key"];
    let (code, body, stderr) = curl_through(dir, &edge, "app.ci.test", "/hello", &alice);
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /hello"),
        "{stderr}"
    );
    // The rules of the file judge at the edge: no certificate, and the admin path.
    let json = ["-H", "Accept: application/json"];
    let (_, body, _) = curl_through(dir, &edge, "app.ci.test", "/hello", &json);
    assert!(
        body.contains("\"code\":\"client_certificate_required\"")
            && body.contains("\"rule\":\"clients\""),
        "{body}"
    );
    let as_alice_json = [&alice[..], &json[..]].concat();
    let (_, body, _) = curl_through(dir, &edge, "app.ci.test", "/admin/x", &as_alice_json);
    assert!(
        body.contains("\"status\":403") && body.contains("\"rule\":\"no-admin\""),
        "{body}"
    );
    // The file's audit_log is the edge's.
    wait_until(
        "the edge audits the request",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(dir.join("edge-audit.jsonl"))
                .unwrap_or_default()
                .contains("/hello")
        },
    );
}

#[test]
fn moat_edge_and_moat_start_refuse_what_the_file_cannot_run() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("moat.toml"),
        r#"
[agent]
edge = "127.0.0.1:1"

[[endpoints]]
name = "out"
kind = "http"
upstream = "8080"
publish = true

[[endpoints]]
name = "here"
kind = "http"
listen = "127.0.0.1:0"
upstream = "8080"
"#,
    )
    .unwrap();
    let stderr = |args: &[&str]| {
        let output = moat_output(dir, args);
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let mixed = stderr(&["start", "--config", "moat.toml", "--all"]);
    assert!(
        mixed.contains(
            "endpoint out is published through the edge (publish = true) and here \
                        listens here"
        ),
        "{mixed}"
    );
    let watched = stderr(&["start", "--config", "moat.toml", "out", "--watch"]);
    assert!(
        watched.contains("--watch reloads listening endpoints only"),
        "{watched}"
    );
    let no_edge = stderr(&["edge", "--config", "moat.toml"]);
    assert!(no_edge.contains("moat.toml: no [edge] table"), "{no_edge}");
    let both = stderr(&["edge", "--config", "moat.toml", "--domain", "*.x.test"]);
    assert!(
        both.contains("'--config <FILE>' cannot be used with '--domain <DOMAIN>'"),
        "{both}"
    );
    std::fs::write(dir.join("edge.toml"), "[edge]\n").unwrap();
    let nothing = stderr(&["start", "--config", "edge.toml", "--all"]);
    assert!(
        nothing.contains("edge.toml: no endpoints to start"),
        "{nothing}"
    );
}
