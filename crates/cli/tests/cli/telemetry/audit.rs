//! What connections other than plain HTTP requests leave in the audit: a `tls` endpoint's
//! handshakes, a client that leaves before the response, handshakes that never start properly.

use crate::common::words;
use crate::gateway_support;

use super::exposition::{metrics_address, settled_metrics, value};
use super::{connect, serve, serve_http};

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use gateway_support::{ClientOptions, audit_events, rustls_request};
use serde_json::Value;

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
