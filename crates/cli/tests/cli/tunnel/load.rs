//! Load through one agent connection: 2,000 clients at once, a client that stops reading a
//! large download next to one that does not, and requests in flight when the agent dies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::kit::{
    RunningEdge, joined_with_alice, publish_flags, server_certificate, start_agent, start_edge,
};
use crate::gateway_support::{ClientOptions, client_config, start_echo_upstream};

const HOST: &str = "load.tunnel.test";

/// An edge and a joined agent publishing [`HOST`] as a `tls` endpoint (TLS ending at the edge)
/// in front of `upstream`; alice's certificate (`alice.crt`) is let in.
fn publish_tls(dir: &Path, upstream: SocketAddr) -> (RunningEdge, crate::gateway_support::Moat) {
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, HOST, 20);
    let flags = publish_flags(HOST, &["--max-connections", "5000"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (agent, _) = start_agent(dir, &edge, "tls", &upstream.to_string(), &flags);
    (edge, agent)
}

/// alice's TLS connection to [`HOST`] through the edge.
fn connect(
    dir: &Path,
    edge: &RunningEdge,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let _ = dir;
    let tcp = TcpStream::connect(("127.0.0.1", edge.public_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let name = HOST.try_into().unwrap();
    let connection = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

fn alice_config(dir: &Path) -> Arc<rustls::ClientConfig> {
    let (ca, crt, key) = (
        dir.join("server-ca.crt"),
        dir.join("alice.crt"),
        dir.join("alice.key"),
    );
    client_config(&ClientOptions::get(&ca, Some((&crt, &key))))
}

#[test]
fn two_thousand_clients_through_one_agent_connection_are_all_answered() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (edge, _agent) = publish_tls(dir, start_echo_upstream());
    let config = alice_config(dir);
    // All 2,000 are open at once: each has its echo before any of them closes.
    let mut open = Vec::with_capacity(2000);
    let started = Instant::now();
    for n in 0..2000u32 {
        let mut client = connect(dir, &edge, &config);
        let message = format!("client {n}\n");
        client.write_all(message.as_bytes()).unwrap();
        open.push((client, message));
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "too slow at client {n}"
        );
    }
    for (n, (client, message)) in open.iter_mut().enumerate() {
        let mut echoed = vec![0u8; message.len()];
        client
            .read_exact(&mut echoed)
            .unwrap_or_else(|error| panic!("client {n}: {error}"));
        assert_eq!(echoed, message.as_bytes(), "client {n}");
    }
    assert_eq!(open.len(), 2000);
}

/// A TCP upstream that reads the client's `go`, sends `size` bytes, then closes (having read
/// everything sent to it, so the close is a FIN, not a reset that could drop bytes in flight).
fn download_upstream(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut go = [0u8; 2];
                if stream.read_exact(&mut go).is_err() {
                    return;
                }
                let chunk = vec![7u8; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let part = left.min(chunk.len());
                    if stream.write_all(&chunk[..part]).is_err() {
                        return;
                    }
                    left -= part;
                }
            });
        }
    });
    address
}

/// Reads a whole download from a fresh connection; returns how long it took.
fn timed_download(
    dir: &Path,
    edge: &RunningEdge,
    config: &Arc<rustls::ClientConfig>,
    size: usize,
) -> Duration {
    let started = Instant::now();
    let mut client = connect(dir, edge, config);
    client.write_all(b"go").unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = 0;
    while received < size {
        match client.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => received += read,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => panic!("download: {error} after {received} bytes"),
        }
    }
    assert_eq!(received, size, "the download was cut short");
    started.elapsed()
}

#[test]
fn a_client_that_stops_reading_does_not_slow_another_through_the_same_agent() {
    const SIZE: usize = 64 * 1024 * 1024;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (edge, agent) = publish_tls(dir, download_upstream(SIZE));
    let config = alice_config(dir);
    let alone = timed_download(dir, &edge, &config, SIZE);

    // A hundred clients start the same download and read nothing: their bytes fill their own
    // streams' windows (100 x 192 KiB, more than the 16 MiB a shared connection window once
    // allowed in all) and socket buffers, nothing more.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut client = connect(dir, &edge, &config);
        client.write_all(b"go").unwrap();
        stalled.push(client);
    }
    // Until the stalled clients' buffers are full, the edge and the agent are busy filling them.
    wait_quiet(&[edge.moat.pid(), agent.pid()]);
    let beside_stalled = timed_download(dir, &edge, &config, SIZE);
    let ratio = beside_stalled.as_secs_f64() / alone.as_secs_f64();
    assert!(
        ratio < 3.0,
        "alone {alone:?}, beside 100 stalled readers {beside_stalled:?} ({ratio:.2}x)"
    );
    eprintln!(
        "download alone {alone:?}, beside 100 stalled readers {beside_stalled:?} ({ratio:.2}x)"
    );
    drop(stalled);
}

/// Waits (at most 30 s) until the processes `pids` use no CPU for 300 ms.
fn wait_quiet(pids: &[u32]) {
    let cpu_ticks = || -> u64 {
        pids.iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // utime and stime: fields 14 and 15, counted after the command name's ')'.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or("", |(_, rest)| rest)
                    .split_whitespace()
                    .collect();
                let field = |n: usize| {
                    fields
                        .get(n)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                field(11) + field(12)
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = cpu_ticks();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        let now = cpu_ticks();
        if now.saturating_sub(before) <= 1 {
            return;
        }
        before = now;
    }
}

#[test]
fn a_request_in_flight_when_the_agent_dies_gets_502_not_a_hang() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "slow.tunnel.test", 20);
    let (upstream, requests) = crate::gateway_support::start_observed_http_upstream();
    let flags = [
        "--domain",
        "slow.tunnel.test",
        "--crt",
        "server-slow.tunnel.test.crt",
        "--key",
        "server-slow.tunnel.test.key",
        "--mutual-tls-cas",
        "cas.pem",
    ];
    let (mut agent, _) = start_agent(dir, &edge, "http", &upstream.to_string(), &flags);
    let public_port = edge.public_port;
    let in_flight = thread::spawn({
        let dir = dir.to_path_buf();
        move || {
            let alice = [
                "--cert",
                "alice.crt",
                "--key",
                "alice.key",
                "-w",
                "%{http_code}",
            ];
            let started = Instant::now();
            let outcome =
                super::kit::curl_to(&dir, public_port, "slow.tunnel.test", "/slow", &alice);
            (outcome, started.elapsed())
        }
    });
    crate::gateway_support::wait_until(
        "the request is at the upstream",
        Duration::from_secs(10),
        || requests.load(std::sync::atomic::Ordering::SeqCst) == 1,
    );
    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(10));
    let ((code, body, stderr), took) = in_flight.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(body.ends_with("502"), "{body}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
