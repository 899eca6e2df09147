//! The edge's control plane through its admin API (curl with the local administrator's
//! certificate): an edge-defined endpoint and CA win over what the agent uploads, apply live,
//! survive a restart on SQLite, and reach a second edge on PostgreSQL within a second.

use std::path::Path;
use std::time::{Duration, Instant};

use super::kit::{
    RunningEdge, client_certificate, curl_to, join, joined_with_alice, server_certificate,
    start_agent, start_agent_with, start_edge, start_edge_at,
};
use super::several_edges::{PgCluster, TwoEdges, join_through_shared_store, start_two_edges};
use crate::gateway_support::{TestCa, curl, start_http_upstream, wait_until};

/// The admin API of the edge whose MOAT_HOME is `dir/home`, as its local administrator:
/// (HTTP status, JSON body). `body` is sent as JSON when given.
pub(crate) fn api(
    dir: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let base = std::fs::read_to_string(dir.join("home/edge/admin-address")).unwrap();
    let url = format!("{}{path}", base.trim());
    let body = body.map(|body| body.to_string());
    let mut args = vec![
        "--cacert",
        "home/edge/admin-ca/ca.crt",
        "--cert",
        "home/edge/admin/admin.crt",
        "--key",
        "home/edge/admin/admin.key",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(body) = &body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    args.push(&url);
    let (code, out, err) = curl(dir, &args);
    assert_eq!(code, 0, "curl {method} {path}: {err}");
    let (json, status) = out.rsplit_once('\n').unwrap();
    let json = if json.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(json).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {json}"))
    };
    (status.parse().unwrap(), json)
}

/// curl to `app.tunnel.test` through the edge at `public_port` as the client `name`: the
/// body on success, else curl's error.
fn as_client(dir: &Path, public_port: u16, name: &str) -> Result<String, String> {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    let (code, body, err) = curl_to(
        dir,
        public_port,
        "app.tunnel.test",
        "/",
        &["--cert", crt.as_str(), "--key", key.as_str()],
    );
    if code == 0 { Ok(body) } else { Err(err) }
}

/// Waits up to `limit` until alice gets in and bob is refused (`alice_in`), or the reverse.
fn wait_for_verdicts(dir: &Path, public_port: u16, alice_in: bool, limit: Duration) {
    let what = if alice_in {
        "alice (the edge-defined CA) in, bob (the agent's CA) out"
    } else {
        "bob (the agent's CA) in, alice out"
    };
    wait_until(what, limit, || {
        as_client(dir, public_port, "alice").is_ok() == alice_in
            && as_client(dir, public_port, "bob").is_ok() != alice_in
    });
}

/// Writes a second client CA (`other.pem`) with its client `bob`; returns it.
fn other_ca(dir: &Path) -> TestCa {
    let other = TestCa::new("Other CA");
    std::fs::write(dir.join("other.pem"), &other.pem).unwrap();
    client_certificate(dir, &other, "bob", 11);
    other
}

/// The flags publishing `app.tunnel.test` with its own certificate and, as the agent's own
/// client CAs, `other.pem` (bob's).
fn publish_with_other_ca() -> Vec<&'static str> {
    vec![
        "--domain",
        "app.tunnel.test",
        "--crt",
        "server-app.tunnel.test.crt",
        "--key",
        "server-app.tunnel.test.key",
        "--mutual-tls-cas",
        "other.pem",
    ]
}

#[test]
fn an_edge_defined_endpoint_wins_applies_live_and_survives_a_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    // alice's CA (cas.pem) is the one the operator defines; the agent uploads bob's.
    let pki = joined_with_alice(dir, "*.tunnel.test");
    server_certificate(dir, &pki.server_ca, "app.tunnel.test", 20);
    other_ca(dir);
    let upstream = start_http_upstream().to_string();
    let (_agent, _) = start_agent(dir, &edge, "http", &upstream, &publish_with_other_ca());
    wait_for_verdicts(dir, edge.public_port, false, Duration::from_secs(5));

    // The API refuses a client without an administrator's certificate at the handshake.
    let admin_url = std::fs::read_to_string(dir.join("home/edge/admin-address")).unwrap();
    let (code, _, err) = curl(
        dir,
        &[
            "--cacert",
            "home/edge/admin-ca/ca.crt",
            &format!("{}/certificate_authorities", admin_url.trim()),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("certificate required") || err.contains("alert"),
        "{err}"
    );
    let (code, _, err) = curl(
        dir,
        &[
            "--cacert",
            "home/edge/admin-ca/ca.crt",
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            &format!("{}/certificate_authorities", admin_url.trim()),
        ],
    );
    assert_ne!(code, 0, "a client certificate of another CA is no admin");
    assert!(err.contains("unknown ca") || err.contains("alert"), "{err}");

    // A leaf is refused as a CA, in the gateway's words.
    let (status, refusal) = api(
        dir,
        "POST",
        "/certificate_authorities",
        Some(serde_json::json!({
            "ca_pem": std::fs::read_to_string(dir.join("alice.crt")).unwrap()
        })),
    );
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(refusal["details"]["field"], "ca_pem", "{refusal}");
    assert!(
        refusal["msg"].as_str().unwrap().contains("is not a CA"),
        "{refusal}"
    );

    // Defined while the agent publishes: served within a second, the edge's CA winning.
    let (status, ca) = api(
        dir,
        "POST",
        "/certificate_authorities",
        Some(serde_json::json!({
            "ca_pem": std::fs::read_to_string(dir.join("cas.pem")).unwrap(),
            "description": "alice's CA"
        })),
    );
    assert_eq!(status, 201, "{ca}");
    let ca_id = ca["id"].as_str().unwrap().to_owned();
    let (status, endpoint) = api(
        dir,
        "POST",
        "/endpoints",
        Some(serde_json::json!({
            "hostname": "app.tunnel.test",
            "certificate_authority_ids": [ca_id],
        })),
    );
    assert_eq!(status, 201, "{endpoint}");
    wait_for_verdicts(dir, edge.public_port, true, Duration::from_secs(1));

    // A restart keeps both, and the agent (reconnected by itself) is served with them.
    let (public_port, agent_port) = (edge.public_port, edge.agent_port);
    let mut edge = edge;
    edge.moat.terminate();
    edge.moat.wait_exit(Duration::from_secs(40));
    let edge = start_edge_at(dir, public_port, agent_port, &["--domain", "*.tunnel.test"]);
    wait_for_verdicts(dir, edge.public_port, true, Duration::from_secs(30));
    let (status, cas) = api(dir, "GET", "/certificate_authorities", None);
    assert_eq!(status, 200);
    assert_eq!(cas["certificate_authorities"][0]["id"], ca["id"], "{cas}");
    let (_, endpoints) = api(dir, "GET", "/endpoints", None);
    assert_eq!(
        endpoints["endpoints"][0]["id"], endpoint["id"],
        "{endpoints}"
    );

    // The join token used before the restart is refused after it.
    let again = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("token"), again.path().join("token")).unwrap();
    let (joined, output) = join(again.path(), "token");
    assert!(!joined && output.contains("was already used"), "{output}");

    // The CA in use cannot go; taken off the endpoint, the agent's own CAs apply again, and
    // then it can be deleted.
    let ca_uri = format!("/certificate_authorities/{}", ca["id"].as_str().unwrap());
    let (status, in_use) = api(dir, "DELETE", &ca_uri, None);
    assert_eq!(status, 409, "{in_use}");
    let endpoint_uri = format!("/endpoints/{}", endpoint["id"].as_str().unwrap());
    let (status, changed) = api(
        dir,
        "PATCH",
        &endpoint_uri,
        Some(serde_json::json!({ "certificate_authority_ids": [] })),
    );
    assert_eq!(status, 200, "{changed}");
    wait_for_verdicts(dir, edge.public_port, false, Duration::from_secs(1));
    let (status, _) = api(dir, "DELETE", &ca_uri, None);
    assert_eq!(status, 204);
}

#[test]
fn an_endpoint_defined_through_one_edge_is_served_by_the_other_within_a_second() {
    let pg = PgCluster::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a_dir.path(), b_dir.path());
    let TwoEdges {
        a: edge_a,
        b: edge_b,
    } = start_two_edges(a, b, &pg.url(), &[]);
    join_through_shared_store(a, &pg.url());
    other_ca(a);
    let upstream = start_http_upstream().to_string();
    let edges = edge_addresses(&[&edge_a, &edge_b]);
    let mut args = vec!["http", upstream.as_str()];
    for edge in &edges {
        args.extend(["--edge", edge.as_str()]);
    }
    args.extend(publish_with_other_ca());
    let (agent, _) = start_agent_with(a, &args);
    std::iter::from_fn(|| agent.next_stdout_line(Duration::from_secs(30)))
        .find(|line| line.contains(" published at "))
        .unwrap_or_else(|| panic!("only one edge published; log:\n{}", agent.log()));
    wait_for_verdicts(a, edge_b.public_port, false, Duration::from_secs(5));

    // Through edge A's API; edge B serves it within a second.
    let (status, ca) = api(
        a,
        "POST",
        "/certificate_authorities",
        Some(serde_json::json!({
            "ca_pem": std::fs::read_to_string(a.join("cas.pem")).unwrap()
        })),
    );
    assert_eq!(status, 201, "{ca}");
    let (status, endpoint) = api(
        a,
        "POST",
        "/endpoints",
        Some(serde_json::json!({
            "hostname": "app.tunnel.test",
            "certificate_authority_ids": [ca["id"]],
        })),
    );
    assert_eq!(status, 201, "{endpoint}");
    let defined = Instant::now();
    wait_for_verdicts(a, edge_b.public_port, true, Duration::from_secs(1));
    eprintln!(
        "edge B served the definition {:?} after edge A's API answered",
        defined.elapsed()
    );
    wait_for_verdicts(a, edge_a.public_port, true, Duration::from_secs(1));

    // Both edges' sessions of the agent are listed, each by its own edge.
    let (status, sessions) = api(a, "GET", "/tunnel_sessions", None);
    assert_eq!(status, 200);
    let sessions = sessions["tunnel_sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_ne!(sessions[0]["edge"], sessions[1]["edge"], "{sessions:?}");
}

fn edge_addresses(edges: &[&RunningEdge]) -> Vec<String> {
    edges
        .iter()
        .map(|edge| format!("127.0.0.1:{}", edge.agent_port))
        .collect()
}

/// Waits for the agent's line about `hostname` being withdrawn; returns it.
fn withdrawn_line(agent: &crate::gateway_support::Moat, hostname: &str) -> String {
    std::iter::from_fn(|| agent.next_stdout_line(Duration::from_secs(5)))
        .find(|line| line.starts_with(&format!("moat: {hostname} withdrawn by the edge")))
        .unwrap_or_else(|| panic!("the agent was not told; log:\n{}", agent.log()))
}

#[test]
fn a_reservation_for_another_agent_or_a_removed_grant_withdraws_the_endpoint() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let pki = joined_with_alice(dir, "*.tunnel.test");
    server_certificate(dir, &pki.server_ca, "app.tunnel.test", 20);
    let upstream = start_http_upstream().to_string();
    let flags = super::kit::publish_flags("app.tunnel.test", &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &flags);
    assert!(as_client(dir, edge.public_port, "alice").is_ok());

    // Reserved for another agent: withdrawn from this one, which is told why.
    let (status, reservation) = api(
        dir,
        "POST",
        "/reserved_domains",
        Some(serde_json::json!({ "hostname": "app.tunnel.test", "agent": "someone-else" })),
    );
    assert_eq!(status, 201, "{reservation}");
    let line = withdrawn_line(&agent, "app.tunnel.test");
    assert!(line.contains("reserved for agent someone-else"), "{line}");
    wait_until("the hostname is offline", Duration::from_secs(1), || {
        super::kit::offline_answer(dir, &edge, "app.tunnel.test").contains("endpoint_offline")
    });
    drop(agent);
    let uri = format!("/reserved_domains/{}", reservation["id"].as_str().unwrap());
    assert_eq!(api(dir, "DELETE", &uri, None).0, 204);

    // Published again; then the grant its join recorded is removed.
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &flags);
    assert!(as_client(dir, edge.public_port, "alice").is_ok());
    let (_, grants) = api(dir, "GET", "/agent_grants", None);
    let grant = &grants["agent_grants"][0];
    assert_eq!(
        grant["hostnames"],
        serde_json::json!(["*.tunnel.test"]),
        "{grants}"
    );
    let uri = format!("/agent_grants/{}", grant["id"].as_str().unwrap());
    assert_eq!(api(dir, "DELETE", &uri, None).0, 204);
    let line = withdrawn_line(&agent, "app.tunnel.test");
    assert!(line.contains("may not publish"), "{line}");
    wait_until("the hostname is offline", Duration::from_secs(1), || {
        super::kit::offline_answer(dir, &edge, "app.tunnel.test").contains("endpoint_offline")
    });
    let audit = std::fs::read_to_string(dir.join("edge-audit.jsonl")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|line| line.contains("\"endpoint_removed\"")
                && line.contains("\"reason\":\"revoked\""))
            .count(),
        2,
        "{audit}"
    );
}
