//! Request bodies sent too slowly or malformed, and codings moat would drop.

use crate::common::words;
use crate::gateway_support;

use super::{raw_exchange, setup};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use gateway_support::{ClientOptions, Moat, UpstreamProcess, client_config, start_python};
use rustls_pki_types::ServerName;

/// Opens a TLS connection as alice and hands back the stream, for clients that send slowly.
fn open_tls(dir: &Path, port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: Some((&dir.join("alice.crt"), &dir.join("alice.key"))),
        tls12_only: false,
        send: b"",
        half_close: false,
    };
    let config = client_config(&options);
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    rustls::StreamOwned::new(connection, socket)
}

/// [`setup`] in a new directory and `moat http` with `extra` flags in front of
/// [`body_reading_upstream`].
fn serve_body_app(extra: &[&str]) -> (tempfile::TempDir, UpstreamProcess, Moat) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let upstream = body_reading_upstream(dir.path());
    let address = format!("http://127.0.0.1:{}", upstream.port);
    let moat = Moat::serve_mtls(dir.path(), "http", &address, extra);
    (dir, upstream, moat)
}

/// An upstream that reads whole request bodies before answering (as most do).
fn body_reading_upstream(dir: &Path) -> UpstreamProcess {
    std::fs::write(
        dir.join("body_app.py"),
        r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(length)
        body = f"received {len(data)} bytes\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#,
    )
    .unwrap();
    start_python(dir, &["body_app.py", "{port}"])
}

#[test]
fn a_request_body_slower_than_the_minimum_rate_is_cut_off_with_408() {
    let extra = "--request-body-timeout 2s --request-body-min-rate 100 --audit-log audit.jsonl";
    let (dir, _upstream, moat) = serve_body_app(&words(extra));
    let port = moat.port();

    // A body at a good rate passes: 1,000 bytes in ten 100-byte pieces, 100 ms apart.
    let mut tls = open_tls(dir.path(), port);
    tls.write_all(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
        .unwrap();
    for _ in 0..10 {
        tls.write_all(&[b'a'; 100]).unwrap();
        tls.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("received 1000 bytes"), "{response}");

    // One byte every 700 ms: 2 s of waiting plus 10 ms per byte is used up after ~3 bytes.
    let started = Instant::now();
    let mut tls = open_tls(dir.path(), port);
    tls.write_all(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    tls.flush().unwrap();
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut received = Vec::new();
    while started.elapsed() < Duration::from_secs(12) {
        let _ = tls.write_all(b"x").and_then(|()| tls.flush());
        let mut buffer = [0u8; 4096];
        match tls.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                received.extend_from_slice(&buffer[..read]);
                if received.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let response = String::from_utf8_lossy(&received).into_owned();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off after {:?}",
        started.elapsed()
    );
    moat.wait_for_log("request body arrived too slowly (timeouts.request_body); cut off with 408");
    let audit = audit_statuses(&dir.path().join("audit.jsonl"), "/up", 2);
    assert!(audit.contains(&200) && audit.contains(&408), "{audit:?}");
}

/// The statuses of the audit events for `path`, waiting up to 5 s for `count` of them.
fn audit_statuses(file: &Path, path: &str, count: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let statuses: Vec<u64> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["event"] == "http_request" && event["path"] == path)
            .filter_map(|event| event["status"].as_u64())
            .collect();
        if statuses.len() >= count || Instant::now() > deadline {
            return statuses;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_side_body_faults_are_the_clients_and_codings_moat_would_drop_are_refused() {
    let (dir, _upstream, moat) = serve_body_app(&["--audit-log", "audit.jsonl"]);
    let port = moat.port();
    let send = |raw: &[u8]| raw_exchange(dir.path(), port, Some("alice"), raw);

    // A coding hyper would strip on the way is refused, not silently dropped.
    for coding in ["gzip, chunked", "deflate,chunked", "chunked, chunked"] {
        let raw = format!(
            "POST /coded HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let response = send(raw.as_bytes());
        assert!(
            response.starts_with("HTTP/1.1 501") || response.starts_with("HTTP/1.1 400"),
            "{coding}: {response}"
        );
        assert!(!response.contains("received"), "{coding}: {response}");
    }
    let response = send(
        b"POST /plain HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(response.contains("received 5 bytes"), "{response}");

    // An invalid chunk is the client's fault: 400, not 502.
    let response = send(
        b"POST /bad-chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    // A client that leaves mid-upload is recorded as 499, not as an upstream failure.
    let mut tls = open_tls(dir.path(), port);
    tls.write_all(
        b"POST /left HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nonly this much",
    )
    .unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(tls);

    let audit = dir.path().join("audit.jsonl");
    assert_eq!(audit_statuses(&audit, "/left", 1), vec![499]);
    assert_eq!(audit_statuses(&audit, "/bad-chunk", 1), vec![400]);
    let log = moat.log();
    assert!(!log.contains("upstream request failed"), "{log}");
}
