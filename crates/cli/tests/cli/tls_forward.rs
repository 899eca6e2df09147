//! `moat tls`: the decrypted byte stream of a verified client carried to a raw TCP upstream.

use crate::gateway_support;

use std::path::Path;

use gateway_support::{
    ClientOptions, Moat, closed_port, gateway_pki_dir, rustls_request, start_echo_upstream,
};
use rustls::AlertDescription;

fn pki() -> tempfile::TempDir {
    gateway_pki_dir("echo-client")
}

fn start_tls(dir: &Path, upstream: &str, terminate_at: &str) -> Moat {
    start_tls_with(dir, upstream, terminate_at, &[])
}

fn start_tls_with(dir: &Path, upstream: &str, terminate_at: &str, extra: &[&str]) -> Moat {
    let args = [&["--terminate-at", terminate_at][..], extra].concat();
    Moat::serve_mtls(dir, "tls", upstream, &args)
}

/// Sends `payload` with close_notify after it, so the echo ends when the upstream has answered.
fn send(
    dir: &Path,
    port: u16,
    with_certificate: bool,
    payload: &[u8],
) -> Result<String, rustls::Error> {
    send_with(dir, port, with_certificate, payload, true)
}

fn send_with(
    dir: &Path,
    port: u16,
    with_certificate: bool,
    payload: &[u8],
    half_close: bool,
) -> Result<String, rustls::Error> {
    let cert = dir.join("client.crt");
    let key = dir.join("client.key");
    rustls_request(
        port,
        &ClientOptions {
            server_ca: &dir.join("server-ca.crt"),
            identity: with_certificate.then_some((cert.as_path(), key.as_path())),
            tls12_only: false,
            send: payload,
            half_close,
        },
    )
}

#[test]
fn tls_endpoint_carries_a_tcp_echo_over_mutual_tls() {
    let scratch = pki();
    let dir = scratch.path();
    let echo = start_echo_upstream();
    for terminate_at in ["edge", "agent"] {
        let moat = start_tls(dir, &echo.to_string(), terminate_at);
        assert!(
            moat.stdout.iter().any(|line| line
                == &format!(
                    "moat: endpoint tls listening on tls://127.0.0.1:{}",
                    moat.port()
                )),
            "{:?}",
            moat.stdout
        );
        assert_eq!(
            send(dir, moat.port(), true, b"ping over mtls\n").unwrap(),
            "ping over mtls\n"
        );
        // Many TLS records, sent whole before reading (so small enough for loopback buffers).
        let payload: String = (0..200_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let echoed = send(dir, moat.port(), true, payload.as_bytes()).unwrap();
        assert_eq!(echoed.len(), payload.len());
        assert!(echoed == payload, "the echo differs from what was sent");

        assert_eq!(
            send(dir, moat.port(), false, b"no certificate\n"),
            Err(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
        );
        moat.wait_for_log("client_subject=\"CN=echo-client\"");
        moat.wait_for_log("connection closed to_upstream=15 to_client=15");
    }
}

#[test]
fn unreachable_tcp_upstream_closes_the_client_connection() {
    let scratch = pki();
    let dir = scratch.path();
    let (_held, closed) = closed_port();
    let moat = start_tls(dir, &closed.to_string(), "edge");
    assert_eq!(
        send(dir, moat.port(), true, b"anyone there?\n"),
        Ok(String::new())
    );
    moat.wait_for_log("cannot connect to the upstream");
}

#[test]
fn a_silent_forwarded_connection_is_closed_after_the_idle_timeout() {
    let scratch = pki();
    let dir = scratch.path();
    let echo = start_echo_upstream();
    let moat = start_tls_with(dir, &echo.to_string(), "edge", &["--idle-timeout", "400ms"]);
    let started = std::time::Instant::now();
    // No half-close: only the idle timeout ends this connection.
    let echoed = send_with(dir, moat.port(), true, b"then silence\n", false).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(echoed, "then silence\n");
    assert!(
        elapsed >= std::time::Duration::from_millis(400)
            && elapsed < std::time::Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
    moat.wait_for_log("to_upstream=13 to_client=13");
    moat.wait_for_log("idle for longer than timeouts.idle");
}
