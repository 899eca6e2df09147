//! `moat verify` and the running gateway reach the same verdict for every refusal reason, the
//! stale CRL under `crl_expired = "refuse"` included: both go through `moat_gateway::explain`.

use crate::gateway_support;

use std::path::Path;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, Moat, TestCa, Usage, audit_events, moat_output, rustls_request,
    start_echo_upstream, start_http_upstream, write_pair, write_server_pki,
};

/// What a client experienced: a TLS alert, or an HTTP status (or `echo` for a tls endpoint).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Alert(String),
    Status(u16),
    Passed,
}

/// Four endpoints: `strict` (CA `ca.pem`, CRL revoking serial 13), `stale` (CA `ca2.pem` whose
/// CRL is past its nextUpdate, `crl_expired = "refuse"`), `rules` (path rules) and `db` (a tls
/// endpoint whose rule admits only CN=db-client).
fn setup(dir: &Path) {
    write_server_pki(dir, "Agree Server CA", "server-ca.pem", 1);
    let ca = TestCa::new("Agree Clients CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let now = time::OffsetDateTime::now_utc();
    write_pair(dir, "good", &ca.leaf("good", Usage::Client, 10));
    write_pair(dir, "expired", &ca.client_dated("expired", 11, -30, -1));
    write_pair(dir, "early", &ca.client_dated("early", 12, 1, 30));
    write_pair(dir, "revoked", &ca.leaf("revoked", Usage::Client, 13));
    write_pair(
        dir,
        "server-usage",
        &ca.leaf("server-usage", Usage::Server, 14),
    );
    write_pair(dir, "db-client", &ca.leaf("db-client", Usage::Client, 15));
    std::fs::write(dir.join("ca.crl"), ca.crl(&[13]).0).unwrap();
    let foreign = TestCa::new("Agree Foreign CA");
    write_pair(dir, "foreign", &foreign.leaf("foreign", Usage::Client, 20));
    let ca2 = TestCa::new("Agree Stale CA");
    std::fs::write(dir.join("ca2.pem"), &ca2.pem).unwrap();
    write_pair(dir, "good2", &ca2.leaf("good2", Usage::Client, 30));
    std::fs::write(
        dir.join("ca2.crl"),
        ca2.crl_until(&[], now - time::Duration::days(1)).0,
    )
    .unwrap();

    let http = start_http_upstream();
    let echo = start_echo_upstream();
    let common = "listen = \"127.0.0.1:0\"\ncrt = \"server.crt\"\nkey = \"server.key\"";
    let config = format!(
        r#"
[[endpoints]]
name = "strict"
kind = "http"
{common}
upstream = "http://{http}"
mutual_tls_cas = ["ca.pem"]
crls = ["ca.crl"]

[[endpoints]]
name = "stale"
kind = "http"
{common}
upstream = "http://{http}"
mutual_tls_cas = ["ca2.pem"]
crls = ["ca2.crl"]
crl_expired = "refuse"

[[endpoints]]
name = "rules"
kind = "http"
{common}
upstream = "http://{http}"
mutual_tls_cas = ["ca.pem"]

[[endpoints.rules]]
name = "health"
paths = ["/healthz"]
action = "bypass"

[[endpoints.rules]]
name = "good-only"
action = "allow"
include = [{{ common_name = "good" }}]

[[endpoints]]
name = "db"
kind = "tls"
{common}
upstream = "{echo}"
mutual_tls_cas = ["ca.pem"]

[[endpoints.rules]]
name = "db-clients"
action = "allow"
include = [{{ common_name = "db-client" }}]
"#
    );
    std::fs::write(dir.join("moat.toml"), config).unwrap();
}

/// What the gateway did to `client` on endpoint `port` asking for `path`.
fn gateway_sees(dir: &Path, port: u16, tls: bool, client: Option<&str>, path: &str) -> Seen {
    let (cert, key) = (
        dir.join(format!("{}.crt", client.unwrap_or(""))),
        dir.join(format!("{}.key", client.unwrap_or(""))),
    );
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: client.map(|_| (cert.as_path(), key.as_path())),
        tls12_only: false,
        send: if tls { b"ping" } else { request.as_bytes() },
        half_close: tls,
    };
    match rustls_request(port, &options) {
        Err(rustls::Error::AlertReceived(alert)) => Seen::Alert(format!("{alert:?}")),
        Err(other) => panic!("{client:?} {path}: unexpected TLS failure {other}"),
        Ok(response) if tls => {
            assert_eq!(response, "ping", "{client:?}");
            Seen::Passed
        }
        Ok(response) => {
            let status: u16 = response
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status in {response:?}"));
            if status == 200 {
                Seen::Passed
            } else {
                Seen::Status(status)
            }
        }
    }
}

/// What `moat verify --config moat.toml --endpoint NAME` says about the same client and path,
/// and the refusal reason it names.
fn verify_sees(dir: &Path, endpoint: &str, client: Option<&str>, path: &str) -> (Seen, String) {
    let cert = client.map(|name| format!("{name}.crt"));
    let mut args = vec![
        "verify",
        "--config",
        "moat.toml",
        "--endpoint",
        endpoint,
        "--path",
        path,
    ];
    if let Some(cert) = &cert {
        args.extend(["--cert", cert]);
    }
    let output = moat_output(dir, &args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        return (Seen::Passed, String::new());
    }
    if let Some(rest) = stderr.split("REFUSED with ").nth(1) {
        let status = rest[..3].parse().unwrap();
        return (Seen::Status(status), rest.to_owned());
    }
    if stderr.contains("TLS alert access_denied") {
        return (Seen::Alert("AccessDenied".into()), "policy_denied".into());
    }
    let rest = stderr
        .split("REFUSED at the handshake: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no verdict in {stderr}"));
    let reason = rest.split_whitespace().next().unwrap().to_owned();
    let alert = rest
        .split("(TLS alert ")
        .nth(1)
        .and_then(|alert| alert.split(')').next())
        .unwrap_or_else(|| panic!("no alert in {stderr}"));
    (Seen::Alert(alert.to_owned()), reason)
}

/// The reason of the newest refused handshake in the audit file, waiting for it to appear.
fn last_refusal_reason(audit: &Path, refused_before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused: Vec<serde_json::Value> = audit_events(audit, 0)
            .into_iter()
            .filter(|event| event["event"] == "tls_handshake" && event["outcome"] == "refused")
            .collect();
        if refused.len() > refused_before {
            return refused[refused.len() - 1]["reason"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no new refused handshake in the audit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn verify_and_the_gateway_agree_on_every_refusal_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    setup(dir);
    let moat = Moat::start(
        dir,
        &[
            "start",
            "--config",
            "moat.toml",
            "--all",
            "--audit-log",
            "audit.jsonl",
        ],
        4,
    );
    let port = |name: &str| {
        moat.endpoints
            .iter()
            .find(|(endpoint, _)| endpoint == name)
            .unwrap()
            .1
            .port()
    };
    let audit = dir.join("audit.jsonl");

    // (endpoint, client, path, what the client sees, the audit/verify reason of a refused handshake)
    let cases: &[(&str, Option<&str>, &str, Seen, &str)] = &[
        ("strict", Some("good"), "/", Seen::Passed, ""),
        (
            "strict",
            None,
            "/",
            Seen::Alert("CertificateRequired".into()),
            "no_certificate",
        ),
        (
            "strict",
            Some("foreign"),
            "/",
            Seen::Alert("UnknownCA".into()),
            "unknown_ca",
        ),
        (
            "strict",
            Some("expired"),
            "/",
            Seen::Alert("CertificateExpired".into()),
            "expired",
        ),
        (
            "strict",
            Some("early"),
            "/",
            Seen::Alert("CertificateExpired".into()),
            "not_yet_valid",
        ),
        (
            "strict",
            Some("revoked"),
            "/",
            Seen::Alert("CertificateRevoked".into()),
            "revoked",
        ),
        (
            "strict",
            Some("server-usage"),
            "/",
            Seen::Alert("UnsupportedCertificate".into()),
            "wrong_usage",
        ),
        ("strict", Some("good"), "/a/../b;c", Seen::Status(400), ""),
        // The stale CRL under crl_expired = "refuse": every client of its CA is refused.
        (
            "stale",
            Some("good2"),
            "/",
            Seen::Alert("UnknownCA".into()),
            "unknown_ca",
        ),
        ("rules", Some("good"), "/", Seen::Passed, ""),
        ("rules", None, "/healthz", Seen::Passed, ""),
        ("rules", None, "/", Seen::Status(403), ""),
        ("rules", Some("db-client"), "/", Seen::Status(403), ""),
        ("db", Some("db-client"), "/", Seen::Passed, ""),
        (
            "db",
            Some("good"),
            "/",
            Seen::Alert("AccessDenied".into()),
            "policy_denied",
        ),
    ];
    for (endpoint, client, path, expected, reason) in cases {
        let refused_before = audit_events(&audit, 0)
            .iter()
            .filter(|event| event["event"] == "tls_handshake" && event["outcome"] == "refused")
            .count();
        let tls = *endpoint == "db";
        let seen = gateway_sees(dir, port(endpoint), tls, *client, path);
        assert_eq!(&seen, expected, "gateway: {endpoint} {client:?} {path}");
        let (verified, verify_reason) = verify_sees(dir, endpoint, *client, path);
        assert_eq!(
            verified, seen,
            "moat verify disagrees with the gateway on {endpoint} {client:?} {path}"
        );
        if let Seen::Alert(_) = seen {
            assert_eq!(
                verify_reason, *reason,
                "verify's reason: {endpoint} {client:?}"
            );
            assert_eq!(
                last_refusal_reason(&audit, refused_before),
                *reason,
                "the gateway's audited reason: {endpoint} {client:?}"
            );
        }
    }
}
