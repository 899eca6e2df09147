//! The telemetry flags of `moat http` (`--audit-log`, `--metrics-listen`) and, without them,
//! audit events on stdout.

use crate::gateway_support;

use super::exposition::{metrics_address, scrape, settled_metrics, value};
use super::{connect, serve_http};

use std::time::Duration;

use gateway_support::{audit_events, curl};
use serde_json::Value;

#[test]
fn audit_log_and_metrics_listen_flags_of_moat_http() {
    let (temp, moat) = serve_http(&[
        "--client-auth",
        "request",
        "--audit-log",
        "flags-audit.jsonl",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let dir = temp.path();
    let metrics = metrics_address(&moat);
    let response = connect(dir, moat.port(), None, false).unwrap();
    assert!(response.starts_with("HTTP/1.1 403 Forbidden"), "{response}");

    let events = audit_events(&dir.join("flags-audit.jsonl"), 2);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["tls_handshake", "http_request"], "{events:#?}");
    assert_eq!(events[0]["endpoint"], "http", "{events:#?}");
    assert_eq!(events[1]["status"], 403, "{events:#?}");

    // HTTP/2 (curl negotiates h2 by ALPN) is audited like HTTP/1.1.
    let port = moat.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/over-h2");
    let (code, body, stderr) = curl(
        dir,
        &[
            "--http2",
            "--resolve",
            &resolve,
            "--cacert",
            "server-ca.crt",
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            &url,
        ],
    );
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /over-h2"),
        "{stderr}"
    );
    let events = audit_events(&dir.join("flags-audit.jsonl"), 4);
    assert_eq!(events[2]["alpn"], "h2", "{events:#?}");
    assert_eq!(events[3]["path"], "/over-h2", "{events:#?}");
    assert_eq!(events[3]["status"], 200, "{events:#?}");
    assert_eq!(events[3]["bytes_out"], body.len(), "{events:#?}");

    let (head, _) = scrape(dir, metrics, "/readyz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, body) = scrape(dir, metrics, "/nothing-here");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("/metrics"), "{body}");
    let samples = settled_metrics(dir, metrics);
    let labels = [("endpoint", "http"), ("status_class", "4xx"), ("rule", "")];
    assert_eq!(value(&samples, "moat_requests_total", &labels), 1.0);
    let labels = [("endpoint", "http"), ("status_class", "2xx"), ("rule", "")];
    assert_eq!(value(&samples, "moat_requests_total", &labels), 1.0);
}

#[test]
fn without_audit_log_the_events_go_to_stdout_one_json_object_per_line() {
    let (temp, moat) = serve_http(&[]);
    let dir = temp.path();
    let response = connect(dir, moat.port(), Some("alice"), false).unwrap();
    assert!(response.ends_with("hello from upstream /"), "{response}");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let line = moat
            .next_stdout_line(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no audit event on stdout after {kinds:?}"));
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        kinds.push(event["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["tls_handshake", "http_request"]);
}
