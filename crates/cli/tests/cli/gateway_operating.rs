//! Operating `moat http`: TLS version limits, the local CA when no certificate is given, graceful
//! shutdown on SIGTERM, handshake timeout, JSON logs, and startup errors that name the fix.

use crate::common::words;
use crate::gateway_support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, client_files, closed_port, curl, gateway_pki_dir, moat_output,
    rustls_request, s_client, start_http_upstream, start_observed_http_upstream, wait_until,
};
use rustls::AlertDescription;

fn pki() -> tempfile::TempDir {
    gateway_pki_dir("ops-client")
}

fn start_http(dir: &Path, extra: &[&str]) -> Moat {
    start_http_to(dir, start_http_upstream(), extra)
}

/// [`start_http`] in front of a given upstream.
fn start_http_to(dir: &Path, upstream: std::net::SocketAddr, extra: &[&str]) -> Moat {
    Moat::serve_mtls(dir, "http", &upstream.to_string(), extra)
}

/// A rustls client presenting client.crt, trusting server-ca.crt, sending one GET.
fn client_options<'a>(
    server_ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    tls12_only: bool,
) -> ClientOptions<'a> {
    ClientOptions {
        server_ca,
        identity: Some((cert, key)),
        tls12_only,
        send: GET_ROOT,
        half_close: false,
    }
}

#[test]
fn tls13_only_endpoint_refuses_a_tls12_client_with_protocol_version() {
    let scratch = pki();
    let dir = scratch.path();
    let moat = start_http(dir, &["--tls-min-version", "1.3"]);
    let (server_ca, cert, key) = client_files(dir);
    let mut options = client_options(&server_ca, &cert, &key, true);
    assert_eq!(
        rustls_request(moat.port(), &options),
        Err(rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion
        ))
    );
    let output = s_client(
        dir,
        moat.port(),
        &[
            "-tls1_2",
            "-CAfile",
            "server-ca.crt",
            "-cert",
            "client.crt",
            "-key",
            "client.key",
        ],
    );
    assert!(output.contains("alert protocol version"), "{output}");

    options.tls12_only = false;
    let response = rustls_request(moat.port(), &options).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    moat.wait_for_log("handshake refused");
}

#[test]
fn default_endpoint_still_serves_tls12_clients() {
    let scratch = pki();
    let dir = scratch.path();
    let moat = start_http(dir, &[]);
    let (server_ca, cert, key) = client_files(dir);
    let options = client_options(&server_ca, &cert, &key, true);
    let response = rustls_request(moat.port(), &options).unwrap();
    assert!(response.ends_with("hello from upstream /"), "{response}");
    moat.wait_for_log("tls_version=\"TLSv1.2\"");
}

#[test]
fn without_crt_moat_issues_a_certificate_from_its_local_ca_and_prints_its_path() {
    let scratch = pki();
    let dir = scratch.path();
    let upstream = start_http_upstream().to_string();
    let moat = Moat::serve(dir, "http", &upstream, &["--mutual-tls-cas", "cas.pem"]);
    let ca_path = dir.join("home/local-ca/ca.crt");
    assert!(ca_path.is_file(), "the local CA is made under MOAT_HOME");
    let hint = format!("curl --cacert {}", ca_path.display());
    assert!(
        moat.stdout.iter().any(|line| line.contains(&hint)),
        "{:?}",
        moat.stdout
    );
    let url = format!("https://127.0.0.1:{}/local", moat.port());
    let ca = ca_path.to_string_lossy().into_owned();
    let (code, body, stderr) = curl(
        dir,
        &[
            "--cacert",
            &ca,
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            &url,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, "hello from upstream /local");
    // A second start reuses the same CA, so the path users trusted stays valid.
    let before = std::fs::read(&ca_path).unwrap();
    drop(moat);
    let again = Moat::serve(dir, "http", &upstream, &["--mutual-tls-cas", "cas.pem"]);
    assert_eq!(std::fs::read(&ca_path).unwrap(), before);
    drop(again);
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let scratch = pki();
    let dir = scratch.path();
    let (upstream, upstream_requests) = start_observed_http_upstream();
    let mut moat = start_http_to(dir, upstream, &["--log-format", "json"]);
    let port = moat.port();
    let dir_path = dir.to_path_buf();
    // /slow answers after 2 seconds; SIGTERM arrives while it is in flight.
    let request = std::thread::spawn(move || {
        curl(
            &dir_path,
            &[
                "--cacert",
                "server-ca.crt",
                "--cert",
                "client.crt",
                "--key",
                "client.key",
                &format!("https://127.0.0.1:{port}/slow"),
            ],
        )
    });
    wait_until(
        "/slow reaches the upstream",
        Duration::from_secs(10),
        || upstream_requests.load(Ordering::SeqCst) == 1,
    );
    let signalled = Instant::now();
    moat.terminate();
    // New connections are refused while the request drains (the upstream holds it 2 s).
    wait_until(
        "moat stops accepting after SIGTERM",
        Duration::from_secs(1),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
    );
    assert!(!request.is_finished(), "the request ended before draining");

    let (code, body, stderr) = request.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, "hello from upstream /slow");
    let status = moat.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));

    let log = moat.log();
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
    }
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

#[test]
fn sigint_stops_an_idle_gateway_promptly() {
    let scratch = pki();
    let dir = scratch.path();
    let mut moat = start_http(dir, &[]);
    moat.signal("INT");
    let status = moat.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    moat.wait_for_log("SIGINT received");
    moat.wait_for_log("shutdown complete");
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let scratch = pki();
    let dir = scratch.path();
    let moat = start_http(dir, &["--request-header-timeout", "300ms"]);
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", moat.port())).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 16];
    let read = silent.read(&mut buffer);
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    let _ = silent.write_all(b"late");
    moat.wait_for_log("reason=\"handshake_timeout\"");
}

#[test]
fn startup_errors_name_the_file_and_the_fix() {
    let scratch = pki();
    let dir = scratch.path();
    let stderr_of = |args: &[&str]| {
        let output = moat_output(dir, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    // clap refuses a certificate without its key before anything runs (usage error: exit 2).
    let output = moat_output(dir, &["http", "8080", "--crt", "server.crt"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the following required arguments were not provided"),
        "{stderr}"
    );
    assert!(stderr.contains("--key <FILE>"), "{stderr}");

    let stderr = stderr_of(&["http", "localhost:x", "--mutual-tls-cas", "missing.pem"]);
    assert!(
        stderr.contains("moat http: --upstream: \"localhost:x\" is not a port, host:port or URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("moat http: --mutual-tls-cas: missing.pem: no such file; check the path"),
        "{stderr}"
    );

    // The client's key does not belong to the server certificate.
    let stderr = stderr_of(&words(
        "http 8080 --listen 127.0.0.1:0 --crt server.crt --key client.key",
    ));
    assert!(stderr.contains("cannot use"), "{stderr}");
    assert!(
        stderr.contains("give the key that belongs to the certificate"),
        "{stderr}"
    );

    std::fs::write(dir.join("not-a-key.pem"), "hello").unwrap();
    let stderr = stderr_of(&words(
        "http 8080 --listen 127.0.0.1:0 --crt server.crt --key not-a-key.pem",
    ));
    assert!(
        stderr.contains("not-a-key.pem: no private key found"),
        "{stderr}"
    );

    // A policy file is named as one, not as the configuration file.
    let stderr = stderr_of(&["http", "8080", "--policy", "missing-policy.toml"]);
    assert!(
        stderr.starts_with("moat: missing-policy.toml: cannot read the policy file: "),
        "{stderr}"
    );

    // The port is taken by another listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let line = format!("http 8080 --listen {address} --crt server.crt --key server.key");
    let stderr = stderr_of(&words(&line));
    assert!(
        stderr.contains(&format!("endpoint http: cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn unreachable_upstream_is_502_and_a_slow_one_504() {
    let scratch = pki();
    let dir = scratch.path();
    let (_held, closed) = closed_port();
    let down = Moat::serve_mtls(dir, "http", &closed.to_string(), &[]);
    // curl's exit code, the HTTP status it got, its stderr.
    let status_of = |url: &str| {
        let client = "--cacert server-ca.crt --cert client.crt --key client.key -o /dev/null";
        curl(
            dir,
            &[&words(client)[..], &["-w", "%{http_code}", url]].concat(),
        )
    };
    let url = format!("https://127.0.0.1:{}/", down.port());
    let (code, status, stderr) = status_of(&url);
    assert_eq!((code, status.as_str()), (0, "502"), "{stderr}");

    let slow = start_http(dir, &["--upstream-response-timeout", "300ms"]);
    let url = format!("https://127.0.0.1:{}/slow", slow.port());
    let (code, status, stderr) = status_of(&url);
    assert_eq!((code, status.as_str()), (0, "504"), "{stderr}");
}

#[test]
fn connections_beyond_max_connections_are_closed_on_arrival_and_counted() {
    let dir = pki();
    let moat = start_http(
        dir.path(),
        &["--max-connections", "2", "--audit-log", "audit.jsonl"],
    );
    let (server_ca, cert, key) = client_files(dir.path());
    let options = client_options(&server_ca, &cert, &key, false);
    let config = gateway_support::client_config(&options);
    // A connection whose handshake is done, held open.
    let open = || {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let socket = std::net::TcpStream::connect(("127.0.0.1", moat.port())).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut tls = rustls::StreamOwned::new(connection, socket);
        let handshake = tls.conn.complete_io(&mut tls.sock).map(|_| ());
        (tls, handshake)
    };
    let (first, handshake) = open();
    handshake.unwrap();
    let (_second, handshake) = open();
    handshake.unwrap();
    let (_third, handshake) = open();
    assert!(
        handshake.is_err(),
        "a third connection finished its handshake"
    );
    moat.wait_for_log(
        "connection refused: max_connections client connections are open; raise max_connections",
    );

    // A freed permit lets the next client in.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let outcome = rustls_request(moat.port(), &options);
        if outcome
            .as_ref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {outcome:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The audit thread writes its batch a moment later (every 5 ms, longer on a loaded machine).
    let audit = || std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !audit()
        .lines()
        .any(|line| line.contains("\"reason\":\"connection_limit\""))
    {
        assert!(
            Instant::now() < deadline,
            "no connection_limit event: {}",
            audit()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
