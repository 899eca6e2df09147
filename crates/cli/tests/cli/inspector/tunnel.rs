//! The inspector of an agent (`moat http --edge`): with TLS ended at the edge, the agent shows
//! each request with the client the edge verified, passes it to the upstream exactly as the
//! edge wrote it, and replays it only as captured (a changed request must be judged by the
//! edge); with TLS ended at the agent, it is the gateway's own inspector.

use std::time::Duration;

use serde_json::json;

use super::{RecordingUpstream, call, inspector_url, replay};
use crate::gateway_support::{Moat, wait_until};
use crate::tunnel::kit::{
    TunnelPki, curl_through, joined_with_alice, next_agent_log, publish_flags, server_certificate,
    start_edge,
};

/// Identity and forwarding headers the edge (or the agent's gateway) sets once each.
const SET_ONCE: [&str; 5] = [
    "moat-client-subject",
    "client-cert",
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
];

#[test]
fn an_agent_inspects_what_the_edge_admitted_without_changing_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let TunnelPki { server_ca, .. } = joined_with_alice(dir, "*.tunnel.test");
    let upstream = RecordingUpstream::start();
    let upstream_address = upstream.address.to_string();
    for (terminate_at, host, serial) in [
        ("edge", "edge.tunnel.test", 30),
        ("agent", "agent.tunnel.test", 31),
    ] {
        server_certificate(dir, &server_ca, host, serial);
        let flags = publish_flags(
            host,
            &["--terminate-at", terminate_at, "--inspect", "127.0.0.1:0"],
        );
        let edge_address = format!("127.0.0.1:{}", edge.agent_port);
        let mut args = vec![
            "http",
            upstream_address.as_str(),
            "--edge",
            edge_address.as_str(),
        ];
        args.extend(flags.iter().map(String::as_str));
        let agent = Moat::start_logged(dir, &next_agent_log(), &args, 0);
        let mut lines = Vec::new();
        while !lines
            .iter()
            .any(|line: &String| line.contains(" published at "))
        {
            let line = agent
                .next_stdout_line(Duration::from_secs(30))
                .unwrap_or_else(|| {
                    panic!("{terminate_at}: no published line; log:\n{}", agent.log())
                });
            lines.push(line);
        }
        let inspector = inspector_url(&lines).expect("the agent's inspector line");
        let api = |path: &str| call(dir, &[], &format!("{inspector}{path}")).1;

        // alice, claiming to be someone else in her headers.
        let spoofing = [
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            "-H",
            "Moat-Client-Subject: CN=admin",
            "-H",
            "X-Forwarded-For: 10.6.6.6",
            "-H",
            &format!("X-Case: {terminate_at}"),
        ];
        let (code, body, stderr) = curl_through(dir, &edge, host, "/orders?id=7", &spoofing);
        assert_eq!(code, 0, "{terminate_at}: {stderr}");
        assert_eq!(body, r#"{"seen":"/orders?id=7"}"#, "{terminate_at}");
        let received = upstream.wait_for("alice's request", |r| {
            r.header("x-case") == Some(terminate_at) && r.target == "/orders?id=7"
        });
        for name in SET_ONCE {
            let count = received.headers.iter().filter(|(n, _)| n == name).count();
            assert_eq!(
                count, 1,
                "{terminate_at}: {name} × {count}: {:?}",
                received.headers
            );
        }
        assert_eq!(
            received.header("moat-client-subject"),
            Some("CN=alice"),
            "{terminate_at}"
        );
        assert_eq!(
            received.header("x-forwarded-for"),
            Some("127.0.0.1"),
            "{terminate_at}"
        );

        let mut listed = json!(null);
        wait_until("the captured request", Duration::from_secs(10), || {
            listed = api("/api/requests/http")["requests"].clone();
            listed.as_array().is_some_and(|list| !list.is_empty())
        });
        let entry = &listed[0];
        assert_eq!(
            entry["client"]["subject"], "CN=alice",
            "{terminate_at}: {entry}"
        );
        assert_eq!(entry["path"], "/orders?id=7");
        assert_eq!(entry["status"], 200);
        assert_eq!(entry["judged_at_edge"], terminate_at == "edge", "{entry}");
        assert!(
            entry["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1"),
            "{entry}"
        );
        assert_eq!(
            entry["request"]["headers"]["moat-client-subject"],
            json!(["CN=alice"]),
            "{terminate_at}: the headers shown are the ones the upstream got"
        );
        if terminate_at == "agent" {
            assert_eq!(entry["tls"]["version"], "TLSv1.3");
        } else {
            assert_eq!(
                entry["tls"]["version"],
                json!(null),
                "the edge's session: {entry}"
            );
        }

        // Replay as captured: allowed, as alice. With changes: only where moat judged it.
        let replay = |body: serde_json::Value| replay(dir, &inspector, &body);
        let before = upstream.received().len();
        let (status, replayed) = replay(json!({ "id": entry["id"] }));
        assert_eq!(status, 201, "{terminate_at}: {replayed}");
        let again = &upstream.received()[before];
        assert_eq!(again.target, "/orders?id=7");
        assert_eq!(again.header("moat-client-subject"), Some("CN=alice"));
        for name in SET_ONCE {
            let count = again.headers.iter().filter(|(n, _)| n == name).count();
            assert_eq!(count, 1, "{terminate_at}: replayed {name} × {count}");
        }
        let (status, answer) = replay(json!({
            "id": entry["id"],
            "modify": { "headers": { "Moat-Client-Subject": "CN=admin" }, "path": "/other" }
        }));
        if terminate_at == "edge" {
            assert_eq!(status, 409, "{answer}");
            assert!(
                answer["msg"].as_str().unwrap().contains("through the edge"),
                "{answer}"
            );
        } else {
            assert_eq!(status, 201, "{answer}");
            let changed = upstream.wait_for("the changed replay", |r| r.target == "/other");
            assert_eq!(changed.header("moat-client-subject"), Some("CN=alice"));
        }
        drop(agent);
    }
}
