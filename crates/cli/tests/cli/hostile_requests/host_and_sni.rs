//! Host headers that do not belong to the endpoint the SNI chose, or are malformed.

use crate::gateway_support;

use super::{CURL_AS_ALICE, setup, status_of};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway_support::{ClientOptions, Moat, START_ALL, client_config, curl};
use rustls_pki_types::ServerName;

/// Two endpoints on one address: a.example.com trusts `cas.pem`, b.example.com `other-cas.pem`.
fn shared_address_config(dir: &Path, upstream: &str, port: u16) {
    let config = format!(
        r#"
[[endpoints]]
name = "a"
kind = "http"
listen = "127.0.0.1:{port}"
domain = "a.example.com"
upstream = "{upstream}"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]
default = true

[[endpoints]]
name = "b"
kind = "http"
listen = "127.0.0.1:{port}"
domain = "b.example.com"
upstream = "{upstream}"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["other-cas.pem"]
"#
    );
    std::fs::write(dir.join("moat.toml"), config).unwrap();
}

/// Sends `raw` over TLS as alice with `sni` and returns the response.
fn exchange_with_sni(dir: &Path, port: u16, sni: &str, raw: &[u8]) -> String {
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: Some((&dir.join("alice.crt"), &dir.join("alice.key"))),
        tls12_only: false,
        send: raw,
        half_close: false,
    };
    let config: Arc<rustls::ClientConfig> = client_config(&options);
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(raw).unwrap();
    let mut received = Vec::new();
    let _ = tls.read_to_end(&mut received);
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn host_must_belong_to_the_endpoint_the_sni_chose_and_be_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let upstream = gateway_support::start_http_upstream();
    let moat = Moat::start_on_free_port(dir.path(), 2, |port| {
        shared_address_config(dir.path(), &format!("http://{upstream}"), port);
        START_ALL.map(String::from).to_vec()
    });
    let port = moat.port();

    let request = |host_lines: &str| {
        format!("GET /x HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n").into_bytes()
    };
    // alice's CA is trusted by a only; she may not reach b by naming it in Host.
    let table: &[(&str, &str, u16)] = &[
        ("a.example.com", "Host: a.example.com\r\n", 200),
        ("a.example.com", "Host: A.Example.com:443\r\n", 200),
        ("a.example.com", "Host: b.example.com\r\n", 421),
        ("a.example.com", "Host: b.example.com.\r\n", 421),
        ("a.example.com", "Host: localhost\r\n", 421),
        ("a.example.com", "", 400),
        (
            "a.example.com",
            "Host: a.example.com\r\nHost: b.example.com\r\n",
            400,
        ),
        (
            "a.example.com",
            "Host: a.example.com, b.example.com\r\n",
            400,
        ),
        ("a.example.com", "Host: alice@b.example.com\r\n", 400),
        ("a.example.com", "Host: a.example.com/x\r\n", 400),
    ];
    for (sni, host_lines, expected) in table {
        let response = exchange_with_sni(dir.path(), port, sni, &request(host_lines));
        assert_eq!(
            status_of(&response),
            *expected,
            "SNI {sni}, {host_lines:?}: {response}"
        );
        if *expected == 200 {
            assert!(response.contains("hello from upstream /x"), "{response}");
        }
    }
    // An absolute-form target names the host too.
    let response = exchange_with_sni(
        dir.path(),
        port,
        "a.example.com",
        b"GET https://b.example.com/x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&response), 421, "{response}");

    // HTTP/2: an :authority of the other endpoint is misdirected too.
    let (code, out, err) = curl(
        dir.path(),
        &[
            &["--http2"][..],
            &CURL_AS_ALICE,
            &[
                "--resolve",
                &format!("a.example.com:{port}:127.0.0.1"),
                "-H",
                &format!("Host: b.example.com:{port}"),
                "-w",
                "\n%{http_code} %{http_version}",
                &format!("https://a.example.com:{port}/x"),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("421 2"), "{out}");
}
