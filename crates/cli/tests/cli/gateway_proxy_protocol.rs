//! `moat tls --upstream-proxy-protocol 1|2`: a PROXY header, parsed with `ppp`, names the client.

use crate::gateway_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gateway_support::{
    ClientOptions, Moat, TestCa, Usage, client_config, rustls_exchange, write_pair,
};
use ppp::v2::{Addresses, Type};
use ppp::{HeaderResult, PartialResult as _};

/// What the test upstream read from the PROXY protocol header of one connection.
#[derive(Debug, Default)]
struct Received {
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    authority: Option<String>,
    tls_version: Option<String>,
    common_name: Option<String>,
    /// The client flags byte and the verify field of the SSL TLV.
    ssl_client_verify: Option<(u8, u32)>,
}

/// An upstream that reads one PROXY header per connection, reports it, then echoes the rest.
fn start_proxy_protocol_upstream() -> (SocketAddr, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (report, received) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let report = report.clone();
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 1024];
                let (parsed, rest) = loop {
                    let read = stream.read(&mut chunk).unwrap();
                    assert!(read > 0, "closed before a whole PROXY header arrived");
                    buffer.extend_from_slice(&chunk[..read]);
                    let result = HeaderResult::parse(&buffer);
                    if result.is_incomplete() {
                        continue;
                    }
                    match result {
                        HeaderResult::V1(Ok(header)) => {
                            let mut received = Received::default();
                            if let ppp::v1::Addresses::Tcp4(ip) = header.addresses {
                                received.source =
                                    Some(SocketAddr::from((ip.source_address, ip.source_port)));
                                received.destination = Some(SocketAddr::from((
                                    ip.destination_address,
                                    ip.destination_port,
                                )));
                            }
                            let used = header.header.len();
                            break (received, buffer[used..].to_vec());
                        }
                        HeaderResult::V2(Ok(header)) => {
                            let mut received = Received::default();
                            if let Addresses::IPv4(ip) = header.addresses {
                                received.source =
                                    Some(SocketAddr::from((ip.source_address, ip.source_port)));
                                received.destination = Some(SocketAddr::from((
                                    ip.destination_address,
                                    ip.destination_port,
                                )));
                            }
                            for tlv in header.tlvs() {
                                let tlv = tlv.unwrap();
                                if tlv.kind == Type::Authority as u8 {
                                    received.authority =
                                        Some(String::from_utf8(tlv.value.to_vec()).unwrap());
                                }
                                if tlv.kind == Type::SSL as u8 {
                                    let value = &tlv.value;
                                    let verify =
                                        u32::from_be_bytes(value[1..5].try_into().unwrap());
                                    received.ssl_client_verify = Some((value[0], verify));
                                    // The sub-TLVs use the same type-length-value layout.
                                    let mut sub = &value[5..];
                                    while sub.len() >= 3 {
                                        let length = u16::from_be_bytes([sub[1], sub[2]]) as usize;
                                        let text =
                                            String::from_utf8(sub[3..3 + length].to_vec()).unwrap();
                                        if sub[0] == Type::SSLVersion as u8 {
                                            received.tls_version = Some(text);
                                        } else if sub[0] == Type::SSLCommonName as u8 {
                                            received.common_name = Some(text);
                                        }
                                        sub = &sub[3 + length..];
                                    }
                                }
                            }
                            let used = header.len();
                            break (received, buffer[used..].to_vec());
                        }
                        HeaderResult::V1(Err(error)) => panic!("bad v1 header: {error}"),
                        HeaderResult::V2(Err(error)) => panic!("bad v2 header: {error}"),
                    }
                };
                report.send(parsed).unwrap();
                stream.write_all(&rest).unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                let _ = stream.write_all(&rest);
            });
        }
    });
    (address, received)
}

/// Starts `moat tls` with the given PROXY protocol version and makes one echo exchange as
/// a client with CN "alice"; returns what the upstream read, the client's own address and
/// moat's address.
fn exchange_with(version: &str) -> (Received, SocketAddr, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let ca = TestCa::new("Clients");
    std::fs::write(path.join("ca.pem"), &ca.pem).unwrap();
    write_pair(path, "alice", &ca.leaf("alice", Usage::Client, 5));
    write_pair(path, "server", &ca.leaf("localhost", Usage::Server, 6));
    let (upstream, received) = start_proxy_protocol_upstream();
    let upstream = upstream.to_string();
    let moat = Moat::serve(
        path,
        "tls",
        &upstream,
        &[
            "--crt",
            "server.crt",
            "--key",
            "server.key",
            "--mutual-tls-cas",
            "ca.pem",
            "--upstream-proxy-protocol",
            version,
        ],
    );
    let (crt, key) = (path.join("alice.crt"), path.join("alice.key"));
    let options = ClientOptions {
        server_ca: &path.join("ca.pem"),
        identity: Some((&crt, &key)),
        tls12_only: false,
        send: b"after the header",
        half_close: true,
    };
    let exchange = rustls_exchange(
        moat.port(),
        client_config(&options),
        Some("localhost"),
        &options,
    );
    assert_eq!(exchange.outcome.unwrap(), "after the header");
    let received = received.recv_timeout(Duration::from_secs(10)).unwrap();
    (received, exchange.local_addr, moat.endpoints[0].1)
}

#[test]
fn proxy_protocol_v2_tells_the_upstream_the_address_sni_tls_version_and_cn() {
    let (received, client, moat) = exchange_with("2");
    assert_eq!(received.source, Some(client));
    assert_eq!(received.destination, Some(moat));
    assert_eq!(received.authority.as_deref(), Some("localhost"));
    assert_eq!(received.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(received.common_name.as_deref(), Some("alice"));
    // PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, verified (0).
    assert_eq!(received.ssl_client_verify, Some((0x07, 0)));
}

#[test]
fn proxy_protocol_v1_tells_the_upstream_the_address() {
    let (received, client, moat) = exchange_with("1");
    assert_eq!(received.source, Some(client));
    assert_eq!(received.destination, Some(moat));
    assert_eq!(received.common_name, None);
}
