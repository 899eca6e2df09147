//! A scripted session of accepted and refused handshakes (one per refusal reason), 200s and a
//! 403, after which the audit stream holds exactly one event per handshake and per request, and
//! `/metrics` parses as Prometheus text whose counters match the session.

use crate::gateway_support;

use super::exposition::{metrics_address, scrape, settled_metrics, value};
use super::{connect, write_certificates};

use gateway_support::{Moat, audit_events, start_http_upstream};
use serde_json::Value;

const CONFIG: &str = r#"
audit_log = "audit.jsonl"
metrics_listen = "127.0.0.1:0"

[[endpoints]]
name = "strict"
kind = "http"
listen = "127.0.0.1:0"
upstream = "UPSTREAM"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]
crls = ["team.crl"]
tls_min_version = "1.3"

[[endpoints]]
name = "lenient"
kind = "http"
listen = "127.0.0.1:0"
upstream = "UPSTREAM"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]
client_auth = "request"
"#;

/// Refused clients of the strict endpoint and the reason each must be recorded under.
const REFUSALS: [(Option<&str>, bool, &str); 8] = [
    (None, false, "no_certificate"),
    (Some("mallory"), false, "unknown_ca"),
    (Some("expired"), false, "expired"),
    (Some("future"), false, "not_yet_valid"),
    (Some("revoked"), false, "revoked"),
    (Some("wrong-usage"), false, "wrong_usage"),
    (Some("forged"), false, "bad_signature"),
    (Some("alice"), true, "protocol_version"),
];

#[test]
fn scripted_session_leaves_one_audit_event_per_handshake_and_request_and_matching_metrics() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write_certificates(dir);
    let upstream = start_http_upstream().to_string();
    std::fs::write(dir.join("moat.toml"), CONFIG.replace("UPSTREAM", &upstream)).unwrap();
    let moat = Moat::start(dir, &["start", "--config", "moat.toml", "--all"], 2);
    let strict = moat.endpoints[0].1.port();
    let lenient = moat.endpoints[1].1.port();
    let metrics = metrics_address(&moat);

    // The session: 2 accepted + 8 refused on strict; 2 accepted (one without certificate) on
    // lenient; requests: 2 × 200 on strict, 200 and 403 on lenient.
    for _ in 0..2 {
        let response = connect(dir, strict, Some("alice"), false).unwrap();
        assert!(response.ends_with("hello from upstream /"), "{response}");
    }
    for (client, tls12_only, reason) in REFUSALS {
        let outcome = connect(dir, strict, client, tls12_only);
        assert!(outcome.is_err(), "{reason}: {outcome:?}");
    }
    let response = connect(dir, lenient, Some("alice"), false).unwrap();
    assert!(response.ends_with("hello from upstream /"), "{response}");
    let response = connect(dir, lenient, None, false).unwrap();
    assert!(response.starts_with("HTTP/1.1 403 Forbidden"), "{response}");

    // Audit: exactly one event per handshake (12) and per request (4).
    let events = audit_events(&dir.join("audit.jsonl"), 16);
    let of = |kind: &str, endpoint: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"] == kind && e["endpoint"] == endpoint)
            .collect()
    };
    assert_eq!(events.len(), 16, "{events:#?}");
    let strict_handshakes = of("tls_handshake", "strict");
    assert_eq!(strict_handshakes.len(), 10, "{strict_handshakes:#?}");
    for event in &events {
        assert!(
            time::OffsetDateTime::parse(
                event["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{event}"
        );
        assert!(
            event["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{event}"
        );
    }
    let accepted: Vec<&&Value> = strict_handshakes
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 2);
    for event in accepted {
        assert_eq!(event["reason"], Value::Null, "{event}");
        assert_eq!(event["sni"], "localhost", "{event}");
        assert_eq!(event["tls_version"], "TLSv1.3", "{event}");
        // curl lists AES-256 first; moat's own preference decides.
        assert_eq!(event["cipher_suite"], "TLS13_AES_128_GCM_SHA256", "{event}");
        assert!(event.get("alpn").is_some(), "{event}");
        let client = &event["client_certificate"];
        assert_eq!(client["subject"], "CN=alice", "{event}");
        assert_eq!(client["issuer"], "CN=Team CA", "{event}");
        assert!(!client["serial"].as_str().unwrap().is_empty(), "{event}");
        let fingerprint = client["fingerprint_sha256"].as_str().unwrap();
        assert!(
            fingerprint.len() == 64 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
            "{event}"
        );
        assert!(client["not_after"].as_str().unwrap().len() >= 20, "{event}");
    }
    for (client, _, reason) in REFUSALS {
        let refused: Vec<&&Value> = strict_handshakes
            .iter()
            .filter(|e| e["reason"] == reason)
            .collect();
        assert_eq!(refused.len(), 1, "{reason}: {strict_handshakes:#?}");
        let event = refused[0];
        assert_eq!(event["outcome"], "refused", "{event}");
        // moat reads the server name from the ClientHello before anything is refused.
        assert_eq!(event["sni"], "localhost", "{event}");
        assert_eq!(event["tls_version"], Value::Null, "{event}");
        let subject = &event["client_certificate"]["subject"];
        match (client, reason) {
            // No certificate sent, or none reached the verifier (the version was refused first).
            (None, _) | (_, "protocol_version") => {
                assert_eq!(event["client_certificate"], Value::Null, "{event}")
            }
            (Some(name), _) => assert_eq!(*subject, format!("CN={name}"), "{event}"),
        }
    }
    let lenient_handshakes = of("tls_handshake", "lenient");
    assert_eq!(lenient_handshakes.len(), 2, "{lenient_handshakes:#?}");
    assert!(
        lenient_handshakes
            .iter()
            .all(|e| e["outcome"] == "accepted")
    );
    assert_eq!(
        lenient_handshakes
            .iter()
            .filter(|e| e["client_certificate"] == Value::Null)
            .count(),
        1
    );

    let strict_requests = of("http_request", "strict");
    assert_eq!(strict_requests.len(), 2, "{strict_requests:#?}");
    let body_length = "hello from upstream /".len() as u64;
    for event in strict_requests {
        assert_eq!(event["method"], "GET", "{event}");
        assert_eq!(event["host"], "localhost", "{event}");
        assert_eq!(event["path"], "/", "{event}");
        assert_eq!(event["status"], 200, "{event}");
        assert_eq!(event["client_subject"], "CN=alice", "{event}");
        assert!(event.get("rule").is_some_and(Value::is_null), "{event}");
        assert!(event["upstream_ms"].as_f64().unwrap() >= 0.0, "{event}");
        assert_eq!(event["bytes_in"], 0, "{event}");
        assert_eq!(event["bytes_out"], body_length, "{event}");
    }
    let lenient_requests = of("http_request", "lenient");
    let statuses: Vec<u64> = lenient_requests
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{lenient_requests:#?}");
    assert!(
        statuses.contains(&200) && statuses.contains(&403),
        "{statuses:?}"
    );
    let forbidden = lenient_requests
        .iter()
        .find(|e| e["status"] == 403)
        .unwrap();
    assert_eq!(forbidden["upstream_ms"], Value::Null, "{forbidden}");
    assert_eq!(forbidden["client_subject"], Value::Null, "{forbidden}");

    // Metrics: the counters match the session.
    let samples = settled_metrics(dir, metrics);
    let handshakes = "moat_handshakes_total";
    for (endpoint, accepted) in [("strict", 2.0), ("lenient", 2.0)] {
        let labels = [("endpoint", endpoint), ("outcome", "accepted")];
        assert_eq!(value(&samples, handshakes, &labels), accepted);
    }
    for (_, _, reason) in REFUSALS {
        let labels = [
            ("endpoint", "strict"),
            ("outcome", "refused"),
            ("reason", reason),
        ];
        assert_eq!(value(&samples, handshakes, &labels), 1.0, "{reason}");
    }
    let refused_total: f64 = samples
        .iter()
        .filter(|s| s.name == handshakes && s.labels["outcome"] == "refused")
        .map(|s| s.value)
        .sum();
    assert_eq!(refused_total, 8.0);
    let requests = "moat_requests_total";
    let rule = ("rule", "");
    assert_eq!(
        value(
            &samples,
            requests,
            &[("endpoint", "strict"), ("status_class", "2xx"), rule]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("endpoint", "lenient"), ("status_class", "2xx"), rule]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("endpoint", "lenient"), ("status_class", "4xx"), rule]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "moat_request_duration_seconds_count",
            &[("endpoint", "strict")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "moat_request_duration_seconds_bucket",
            &[("endpoint", "strict"), ("le", "+Inf")]
        ),
        2.0
    );
    assert_eq!(
        value(&samples, "moat_sent_bytes_total", &[("endpoint", "strict")]),
        2.0 * body_length as f64
    );
    assert_eq!(
        value(
            &samples,
            "moat_received_bytes_total",
            &[("endpoint", "strict")]
        ),
        0.0
    );
    for endpoint in ["strict", "lenient"] {
        let labels = [("endpoint", endpoint)];
        assert_eq!(value(&samples, "moat_open_connections", &labels), 0.0);
    }
    for outcome in ["success", "failure"] {
        let labels = [("outcome", outcome)];
        assert_eq!(value(&samples, "moat_config_reloads_total", &labels), 0.0);
    }
    assert_eq!(value(&samples, "moat_audit_events_dropped_total", &[]), 0.0);

    // Expiry gauges: the server certificate, the CA and the CRL of each endpoint.
    let expiry = "moat_certificate_expiry_timestamp_seconds";
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let day = 86_400.0;
    for endpoint in ["strict", "lenient"] {
        let server = value(
            &samples,
            expiry,
            &[
                ("endpoint", endpoint),
                ("kind", "server"),
                ("subject", "CN=localhost"),
            ],
        );
        assert!((server - (now + 365.0 * day)).abs() < day, "{server}");
        let ca = value(
            &samples,
            expiry,
            &[
                ("endpoint", endpoint),
                ("kind", "ca"),
                ("subject", "CN=Team CA"),
            ],
        );
        assert!(ca > now, "{ca}");
    }
    let crl = value(
        &samples,
        expiry,
        &[
            ("endpoint", "strict"),
            ("kind", "crl"),
            ("subject", "CN=Team CA"),
        ],
    );
    assert!((crl - (now + 7.0 * day)).abs() < day, "{crl}");
    assert!(
        samples
            .iter()
            .filter(|s| s.name == expiry)
            .all(|s| s.labels["file"].ends_with(".crt")
                || s.labels["file"].ends_with(".pem")
                || s.labels["file"].ends_with(".crl")),
        "{samples:?}"
    );

    // The CRL runs out within 14 days: startup warned about it.
    let log = moat.log();
    assert!(
        log.contains("CRL (nextUpdate) expires within 14 days") && log.contains("team.crl"),
        "{log}"
    );

    // Health: alive and ready.
    let (head, body) = scrape(dir, metrics, "/healthz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok\n");
    let (head, _) = scrape(dir, metrics, "/readyz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
