//! `tls` endpoints through an edge: terminated at the agent with a PROXY header naming the
//! client the edge saw, refused with `unrecognized_name` once their agent is gone, and a
//! hostname the edge assigns when the agent names none.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::kit::{
    RunningEdge, joined_with_alice, offline_answer, publish_flags, server_certificate, start_agent,
    start_edge,
};
use crate::gateway_support::{ClientOptions, client_config, wait_until};

/// A TCP upstream that answers each connection with the first line it reads (the PROXY header).
fn proxy_line_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_ok() {
                    let mut stream = stream;
                    let _ = stream.write_all(line.as_bytes());
                }
            });
        }
    });
    address
}

/// A TLS client of `host` through the edge, as alice; returns the stream and its local address.
fn alice_to(
    dir: &Path,
    edge: &RunningEdge,
    host: &str,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    SocketAddr,
) {
    let (ca, crt, key) = (
        dir.join("server-ca.crt"),
        dir.join("alice.crt"),
        dir.join("alice.key"),
    );
    let config: Arc<rustls::ClientConfig> =
        client_config(&ClientOptions::get(&ca, Some((&crt, &key))));
    let tcp = TcpStream::connect(("127.0.0.1", edge.public_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local = tcp.local_addr().unwrap();
    let connection =
        rustls::ClientConnection::new(config, host.to_owned().try_into().unwrap()).unwrap();
    (rustls::StreamOwned::new(connection, tcp), local)
}

#[test]
fn a_tls_endpoint_terminated_at_the_agent_names_the_client_the_edge_saw() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &[]);
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "db.tunnel.test", 20);
    let flags = publish_flags(
        "db.tunnel.test",
        &["--terminate-at", "agent", "--upstream-proxy-protocol", "1"],
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (_agent, url) = start_agent(
        dir,
        &edge,
        "tls",
        &proxy_line_upstream().to_string(),
        &flags,
    );
    assert_eq!(url, format!("tls://db.tunnel.test:{}", edge.public_port));

    let (mut client, local) = alice_to(dir, &edge, "db.tunnel.test");
    client.write_all(b"hello\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut client).read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            local.port(),
            edge.public_port
        )
    );
}

#[test]
fn a_tls_hostname_whose_agent_left_is_refused_with_unrecognized_name() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "db.tunnel.test", 20);
    let flags = publish_flags("db.tunnel.test", &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (mut agent, _) = start_agent(
        dir,
        &edge,
        "tls",
        &proxy_line_upstream().to_string(),
        &flags,
    );
    let (mut client, _) = alice_to(dir, &edge, "db.tunnel.test");
    client.write_all(b"PROXY-less\n").unwrap();
    let mut echoed = String::new();
    BufReader::new(&mut client).read_line(&mut echoed).unwrap();
    assert_eq!(echoed, "PROXY-less\n");

    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(10));
    wait_until(
        "the tls hostname is refused by name",
        Duration::from_secs(20),
        || {
            let (mut client, _) = alice_to(dir, &edge, "db.tunnel.test");
            let mut byte = [0u8; 1];
            let outcome = client
                .write_all(b"x\n")
                .and_then(|()| client.read(&mut byte).map(|_| ()));
            matches!(
                outcome
                    .as_ref()
                    .err()
                    .and_then(|error| error.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnrecognisedName
                ))
            )
        },
    );
    // An http hostname under the edge's domain answers "endpoint offline" instead.
    assert!(offline_answer(dir, &edge, "web.tunnel.test").contains("endpoint_offline"));
}

#[test]
fn without_a_domain_the_edge_assigns_a_hostname_under_its_own() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &["--domain", "*.tunnel.test"]);
    joined_with_alice(dir, "*.tunnel.test");
    let upstream = crate::gateway_support::start_http_upstream().to_string();
    let (_agent, url) = start_agent(
        dir,
        &edge,
        "http",
        &upstream,
        &["--mutual-tls-cas", "cas.pem"],
    );
    let host = url
        .strip_prefix("https://")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _)| host.to_owned())
        .unwrap_or_else(|| panic!("{url}"));
    assert!(
        host.ends_with(".tunnel.test") && host.starts_with("agent-"),
        "{url}"
    );
    // No certificate came from the agent: the edge's local CA issued one for the name.
    let local_ca = dir.join("home/local-ca/ca.crt");
    let trust = [
        "--cacert",
        local_ca.to_str().unwrap(),
        "--cert",
        "alice.crt",
        "--key",
        "alice.key",
    ];
    let resolve = format!("{host}:{}:127.0.0.1", edge.public_port);
    let (code, body, stderr) = crate::gateway_support::curl(
        dir,
        &[
            &trust[..],
            &["--resolve", &resolve, &format!("{url}/named")],
        ]
        .concat(),
    );
    assert_eq!(
        (code, body.as_str()),
        (0, "hello from upstream /named"),
        "{stderr}"
    );
}

#[test]
fn a_tls_endpoint_terminated_at_the_edge_sends_the_proxy_header_from_the_edge() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let edge = start_edge(dir, &[]);
    let server_ca = joined_with_alice(dir, "*.tunnel.test").server_ca;
    server_certificate(dir, &server_ca, "db.tunnel.test", 20);
    let flags = publish_flags("db.tunnel.test", &["--upstream-proxy-protocol", "1"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (_agent, _) = start_agent(
        dir,
        &edge,
        "tls",
        &proxy_line_upstream().to_string(),
        &flags,
    );
    let (mut client, local) = alice_to(dir, &edge, "db.tunnel.test");
    client.write_all(b"hello\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut client).read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            local.port(),
            edge.public_port
        )
    );
}
