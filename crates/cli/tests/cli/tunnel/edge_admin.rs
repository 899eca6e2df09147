//! `moat edge ca|endpoints|grants|domains|agents|disconnect` against a real edge's admin API,
//! with the credentials and the address the edge leaves in MOAT_HOME.

use std::path::Path;
use std::time::Duration;

use super::kit::{joined_with_alice, publish_flags, server_certificate, start_agent, start_edge};
use crate::gateway_support::{TestCa, Usage, moat_output, start_http_upstream, wait_until};

/// `moat edge ARGS` in `dir`, which must succeed; its stdout.
fn edge_ok(dir: &Path, args: &[&str]) -> String {
    let output = moat_output(dir, &[&["edge"][..], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "moat edge {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `moat edge ARGS` in `dir`, which must fail with exit code 1; its stderr.
fn edge_refused(dir: &Path, args: &[&str]) -> String {
    let output = moat_output(dir, &[&["edge"][..], args].concat());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "moat edge {args:?} should have failed: {}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// `moat edge ARGS --json` in `dir`, parsed.
fn edge_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let stdout = edge_ok(dir, &[args, &["--json"]].concat());
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

/// The words of the table row that starts with `first`, or none.
fn row(table: &str, first: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|line| line.split("  ").filter(|cell| !cell.is_empty()))
        .map(|cells| cells.map(|cell| cell.trim().to_owned()).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(first))
}

#[test]
fn cas_endpoints_grants_and_domains_are_managed_from_the_command_line() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let _edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let ca = TestCa::new("Lab Clients CA");
    std::fs::write(dir.join("lab-ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("leaf.pem"), ca.leaf("bob", Usage::Client, 7).0).unwrap();

    // A CA, shown with its name and the days it has left (rcgen's default: until 4096).
    let added = edge_ok(dir, &["ca", "add", "lab-ca.pem", "--description", "lab"]);
    let ca_id = added
        .split_whitespace()
        .find(|word| word.starts_with("ca_"))
        .unwrap_or_else(|| panic!("no id: {added}"))
        .to_owned();
    assert!(added.contains("CN Lab Clients CA"), "{added}");
    let list = edge_ok(dir, &["ca", "list"]);
    assert!(list.starts_with("ID  "), "{list}");
    let listed = row(&list, &ca_id).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(listed[1], "Lab Clients CA", "{list}");
    let days_left: u32 = listed[3].parse().unwrap_or_else(|_| panic!("{list}"));
    assert!(days_left > 365, "{list}");

    // A leaf is no CA: the edge refuses it in the gateway's words.
    let refused = edge_refused(dir, &["ca", "add", "leaf.pem"]);
    assert!(
        refused.starts_with("moat: the edge refused: ca_pem: ")
            && refused.contains("is not a CA (basicConstraints cA=false)"),
        "{refused}"
    );

    // An endpoint trusting the CA, which then cannot go.
    let added = edge_ok(
        dir,
        &["endpoints", "add", "app.tunnel.test", "--ca", &ca_id],
    );
    assert!(added.contains("app.tunnel.test"), "{added}");
    let endpoints = edge_json(dir, &["endpoints", "list"]);
    let endpoint = &endpoints["endpoints"][0];
    assert_eq!(endpoint["hostname"], "app.tunnel.test", "{endpoints}");
    assert_eq!(endpoint["certificate_authority_ids"][0], ca_id.as_str());
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let list = edge_ok(dir, &["endpoints", "list"]);
    let listed = row(&list, &endpoint_id).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        listed[1..6],
        ["app.tunnel.test", "http", "edge", "no", &ca_id]
    );
    let list = edge_ok(dir, &["ca", "list"]);
    assert_eq!(row(&list, &ca_id).unwrap()[4], "app.tunnel.test", "{list}");
    let refused = edge_refused(dir, &["ca", "rm", &ca_id]);
    assert!(
        refused.contains("is used by endpoint") && refused.contains(&endpoint_id),
        "{refused}"
    );

    let changed = edge_json(dir, &["endpoints", "set", &endpoint_id, "--pool"]);
    assert_eq!(changed["pool"], true, "{changed}");
    assert_eq!(changed["certificate_authority_ids"][0], ca_id.as_str());

    let removed = edge_ok(dir, &["endpoints", "rm", &endpoint_id]);
    assert!(removed.contains(&endpoint_id) && removed.contains("app.tunnel.test"));
    let removed = edge_ok(dir, &["ca", "rm", &ca_id]);
    assert!(removed.contains(&ca_id), "{removed}");
    let cas = edge_json(dir, &["ca", "list"]);
    assert_eq!(
        cas["certificate_authorities"],
        serde_json::json!([]),
        "{cas}"
    );

    // Grants.
    let grant = edge_json(
        dir,
        &[
            "grants",
            "add",
            "ci-*",
            "*.ci.example.com",
            "status.example.com",
        ],
    );
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let list = edge_ok(dir, &["grants", "list"]);
    assert_eq!(
        row(&list, &grant_id).unwrap()[1..3],
        ["ci-*", "*.ci.example.com,status.example.com"],
        "{list}"
    );
    assert!(edge_ok(dir, &["grants", "rm", &grant_id]).contains(&grant_id));
    assert!(row(&edge_ok(dir, &["grants", "list"]), &grant_id).is_none());

    // Reserved domains.
    let reserved = edge_ok(
        dir,
        &["domains", "reserve", "db.tunnel.test", "--agent", "laptop"],
    );
    let domain_id = reserved
        .split_whitespace()
        .find(|word| word.starts_with("rd_"))
        .unwrap_or_else(|| panic!("no id: {reserved}"))
        .to_owned();
    let refused = edge_refused(
        dir,
        &["domains", "reserve", "db.tunnel.test", "--agent", "other"],
    );
    assert!(
        refused.contains("already reserved for agent laptop"),
        "{refused}"
    );
    let list = edge_ok(dir, &["domains", "list"]);
    assert_eq!(
        row(&list, &domain_id).unwrap()[1..3],
        ["db.tunnel.test", "laptop"],
        "{list}"
    );
    let released = edge_ok(dir, &["domains", "release", &domain_id]);
    assert!(released.contains("db.tunnel.test"), "{released}");
    let domains = edge_json(dir, &["domains", "list"]);
    assert_eq!(domains["reserved_domains"], serde_json::json!([]));
}

#[test]
fn connected_agents_are_listed_and_an_operator_disconnects_them_by_name() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    assert_eq!(
        edge_ok(dir, &["agents"]),
        "AGENT  EDGE  SINCE  LAST HEARTBEAT  SESSION\n"
    );

    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "app.tunnel.test", 20);
    let upstream = start_http_upstream().to_string();
    let flags = publish_flags("app.tunnel.test", &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (agent, _) = start_agent(dir, &edge, "http", &upstream, &flags);

    let sessions = edge_json(dir, &["agents"]);
    let session = &sessions["tunnel_sessions"][0];
    let name = session["agent"].as_str().unwrap().to_owned();
    let session_id = session["id"].as_str().unwrap().to_owned();
    let list = edge_ok(dir, &["agents"]);
    let listed = row(&list, &name).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(listed.last(), Some(&session_id), "{list}");
    assert!(listed[3].ends_with("s ago"), "{list}");

    let said = edge_ok(dir, &["disconnect", &name]);
    assert!(
        said.contains("ended 1 session") && said.contains(&session_id),
        "{said}"
    );
    agent.wait_for_log("disconnected from the edge");
    let audit = || std::fs::read_to_string(dir.join("edge-audit.jsonl")).unwrap_or_default();
    wait_until(
        "the edge audits the operator's disconnect",
        Duration::from_secs(10),
        || {
            audit()
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .any(|event| {
                    event["event"] == "agent_disconnected"
                        && event["agent"] == name.as_str()
                        && event["reason"] == "operator"
                })
        },
    );

    let refused = edge_refused(dir, &["disconnect", "nobody"]);
    assert!(
        refused.contains("no live session of an agent named nobody"),
        "{refused}"
    );
}

#[test]
fn without_a_running_edge_the_commands_say_where_its_address_should_be() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let refused = edge_refused(dir, &["ca", "list"]);
    let file = dir.join("home/edge/admin-address");
    assert_eq!(
        refused.trim(),
        format!(
            "moat: no edge has recorded its admin API in {}; start `moat edge` or give --api URL",
            file.display()
        )
    );
}
