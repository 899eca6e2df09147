//! Audit events, Prometheus metrics and health probes of a running moat: a scripted session of
//! accepted and refused handshakes (one per refusal reason), 200s and a 403, after which the
//! audit stream holds exactly one event per handshake and per request, and `/metrics` parses as
//! Prometheus text whose counters match the session.

use crate::common::words;
use crate::gateway_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, TestCa, Usage, audit_events, curl, rustls_request,
    start_http_upstream, write_pair, write_server_pki,
};
use serde_json::Value;

const REVOKED_SERIAL: u64 = 0x666;

/// A directory with [`write_certificates`] and `moat KIND UPSTREAM` on it with the usual mTLS
/// files and `extra` flags.
fn serve(kind: &str, upstream: &str, extra: &[&str]) -> (tempfile::TempDir, Moat) {
    let temp = tempfile::tempdir().unwrap();
    write_certificates(temp.path());
    let moat = Moat::serve_mtls(temp.path(), kind, upstream, extra);
    (temp, moat)
}

/// [`serve`] of `moat http` in front of a fresh [`start_http_upstream`].
fn serve_http(extra: &[&str]) -> (tempfile::TempDir, Moat) {
    serve("http", &start_http_upstream().to_string(), extra)
}

/// Certificates for every case of the session, written into `dir`.
fn write_certificates(dir: &Path) {
    write_server_pki(dir, "Server CA", "server-ca.crt", 1);

    let team = TestCa::new("Team CA");
    std::fs::write(dir.join("cas.pem"), &team.pem).unwrap();
    write_pair(dir, "alice", &team.leaf("alice", Usage::Client, 10));
    write_pair(
        dir,
        "mallory",
        &TestCa::new("Foreign CA").leaf("mallory", Usage::Client, 11),
    );
    let expired = team.client_dated("expired", 12, -30, -1);
    write_pair(dir, "expired", &expired);
    let future = team.client_dated("future", 13, 1, 30);
    write_pair(dir, "future", &future);
    write_pair(
        dir,
        "revoked",
        &team.leaf("revoked", Usage::Client, REVOKED_SERIAL),
    );
    write_pair(
        dir,
        "wrong-usage",
        &team.leaf("wrong-usage", Usage::Server, 14),
    );
    // Same issuer name as the trusted CA, another key: the signature cannot verify.
    write_pair(
        dir,
        "forged",
        &TestCa::new("Team CA").leaf("forged", Usage::Client, 15),
    );
    // The CRL's nextUpdate is 7 days away, inside the 14-day warning window.
    std::fs::write(dir.join("team.crl"), team.crl(&[REVOKED_SERIAL]).0).unwrap();
}

/// One TLS connection sending `GET /` as `client` (cert/key files named after it).
fn connect(
    dir: &Path,
    port: u16,
    client: Option<&str>,
    tls12_only: bool,
) -> Result<String, rustls::Error> {
    let cert = client.map(|name| dir.join(format!("{name}.crt")));
    let key = client.map(|name| dir.join(format!("{name}.key")));
    rustls_request(
        port,
        &ClientOptions {
            server_ca: &dir.join("server-ca.crt"),
            identity: cert.as_deref().zip(key.as_deref()),
            tls12_only,
            send: GET_ROOT,
            half_close: false,
        },
    )
}

/// `moat: metrics listening on http://ADDR` → ADDR.
fn metrics_address(moat: &Moat) -> SocketAddr {
    moat.stdout
        .iter()
        .find_map(|line| line.strip_prefix("moat: metrics listening on http://"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", moat.stdout))
        .parse()
        .unwrap()
}

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the Prometheus / OpenMetrics text format as far as moat uses it: every
/// sample belongs to a family declared by `# TYPE`, label values are quoted with escapes, and
/// the text ends with `# EOF`. Panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition must end with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let family = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            let rest = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment: {line}"));
            match keyword {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&rest),
                        "unknown type in {line}"
                    );
                    families.insert(family.to_owned(), rest.to_owned());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let sample = parse_sample(line);
        let declared = families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}"))
        });
        assert!(declared, "sample of an undeclared family: {line}");
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let (start, first) = chars
                .next()
                .unwrap_or_else(|| panic!("open labels: {line}"));
            if first == '}' {
                rest = &inner[start + 1..];
                break;
            }
            let mut key = String::from(first);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "unquoted value: {line}"
            );
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => panic!("bad escape {other:?}: {line}"),
                    },
                    Some(c) => value.push(c),
                    None => panic!("unterminated value: {line}"),
                }
            }
            assert!(
                labels.insert(key, value).is_none(),
                "repeated label: {line}"
            );
            if let Some((_, ',')) = chars.peek() {
                chars.next();
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The value of the sample `name` whose labels include all of `labels`; fails if not exactly one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn scrape(dir: &Path, address: SocketAddr, path: &str) -> (String, String) {
    let url = format!("http://{address}{path}");
    let (code, body, stderr) = curl(dir, &["-i", &url]);
    assert_eq!(code, 0, "curl {url}: {stderr}");
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// Waits (at most 10 s) until every connection has closed and returns the parsed metrics.
fn settled_metrics(dir: &Path, address: SocketAddr) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (head, body) = scrape(dir, address, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("application/openmetrics-text"), "{head}");
        let samples = parse_exposition(&body);
        let open: f64 = samples
            .iter()
            .filter(|s| s.name == "moat_open_connections")
            .map(|s| s.value)
            .sum();
        if open == 0.0 || Instant::now() > deadline {
            return samples;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

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

#[test]
fn a_tls_endpoint_audits_its_handshakes_and_counts_forwarded_bytes() {
    let echo = gateway_support::start_echo_upstream().to_string();
    let (temp, moat) = serve(
        "tls",
        &echo,
        &words("--audit-log tls-audit.jsonl --metrics-listen 127.0.0.1:0"),
    );
    let dir = temp.path();
    let metrics = metrics_address(&moat);
    let payload = b"twelve bytes";
    let alice = (dir.join("alice.crt"), dir.join("alice.key"));
    let echoed = rustls_request(
        moat.port(),
        &ClientOptions {
            server_ca: &dir.join("server-ca.crt"),
            identity: Some((alice.0.as_path(), alice.1.as_path())),
            tls12_only: false,
            send: payload,
            half_close: true,
        },
    )
    .unwrap();
    assert_eq!(echoed.as_bytes(), payload);
    assert!(connect(dir, moat.port(), Some("mallory"), false).is_err());

    let events = audit_events(&dir.join("tls-audit.jsonl"), 2);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events.iter().all(|e| e["event"] == "tls_handshake"),
        "{events:#?}"
    );
    assert_eq!(events[0]["outcome"], "accepted", "{events:#?}");
    assert_eq!(events[0]["client_certificate"]["subject"], "CN=alice");
    assert_eq!(events[1]["reason"], "unknown_ca", "{events:#?}");

    let samples = settled_metrics(dir, metrics);
    let labels = [("endpoint", "tls")];
    let length = payload.len() as f64;
    assert_eq!(
        value(&samples, "moat_received_bytes_total", &labels),
        length
    );
    assert_eq!(value(&samples, "moat_sent_bytes_total", &labels), length);
    assert!(
        samples.iter().all(|s| s.name != "moat_requests_total"),
        "a tls endpoint has no HTTP requests"
    );
}

/// An upstream that reports each request head it receives and never answers.
fn start_silent_upstream() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (heads, received) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let heads = heads.clone();
            thread::spawn(move || {
                let mut reader = std::io::BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_ok() {
                    let _ = heads.send(line);
                }
                // Hold the connection open without answering until moat closes it.
                let _ = std::io::Read::read_to_end(&mut reader, &mut Vec::new());
            });
        }
    });
    (address, received)
}

#[test]
fn a_client_that_leaves_before_the_response_is_audited_as_499() {
    use std::io::Write as _;
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let (upstream, heads) = start_silent_upstream();
    let upstream = upstream.to_string();
    let (temp, moat) = serve("http", &upstream, &["--audit-log", "audit.jsonl"]);
    let dir = temp.path();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("server-ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("alice.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("alice.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", moat.port())).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(b"GET /never HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    tls.flush().unwrap();
    // Leave once the request is upstream, before any response.
    let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head.starts_with("GET /never "), "{head}");
    drop(tls);

    let events = audit_events(&dir.join("audit.jsonl"), 2);
    let request = events
        .iter()
        .find(|e| e["event"] == "http_request")
        .unwrap_or_else(|| panic!("no http_request event: {events:#?}"));
    assert_eq!(request["status"], 499, "{request}");
    assert_eq!(request["path"], "/never", "{request}");
    assert_eq!(request["upstream_ms"], Value::Null, "{request}");
}

#[test]
fn handshakes_that_never_start_properly_are_audited_with_their_reason() {
    use std::io::{Read as _, Write as _};

    let (temp, moat) = serve_http(&[
        "--request-header-timeout",
        "500ms",
        "--audit-log",
        "audit.jsonl",
    ]);
    let dir = temp.path();
    let address = ("127.0.0.1", moat.port());
    // A TCP health check: connect and close.
    drop(std::net::TcpStream::connect(address).unwrap());
    // Plain HTTP on the TLS port.
    let mut plain = std::net::TcpStream::connect(address).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    // A client that never speaks: cut off after the header timeout.
    let mut silent = std::net::TcpStream::connect(address).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = silent.read_to_end(&mut Vec::new());

    let events = audit_events(&dir.join("audit.jsonl"), 3);
    let mut reasons: Vec<&str> = events
        .iter()
        .map(|e| {
            assert_eq!(e["outcome"], "refused", "{e}");
            e["reason"].as_str().unwrap()
        })
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["connection_closed", "handshake_timeout", "other"],
        "{events:#?}"
    );
}
