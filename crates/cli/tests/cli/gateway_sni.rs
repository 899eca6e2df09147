//! Endpoints sharing one address, told apart by SNI (certificate, CAs, upstream); CA hints.

use crate::gateway_support;

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, START_ALL, TestCa, Usage, client_config, rustls_exchange,
    s_client, start_echo_upstream, start_http_upstream, write_pair,
};

/// Two endpoints on one address: `a.test` (http, clients of CA A) and `b.test` (tls echo,
/// clients of CA B, the default for clients without SNI).
struct SharedAddress {
    _dir: tempfile::TempDir,
    moat: Moat,
}

fn start_shared_address() -> SharedAddress {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let server_ca = TestCa::new("Server CA");
    std::fs::write(path.join("server-ca.pem"), &server_ca.pem).unwrap();
    write_pair(path, "a", &server_ca.server_leaf_for(&["a.test"], 1));
    write_pair(
        path,
        "b",
        &server_ca.server_leaf_for(&["b.test", "localhost"], 2),
    );
    let ca_a = TestCa::new("Clients A");
    let ca_b = TestCa::new("Clients B");
    std::fs::write(path.join("ca-a.pem"), &ca_a.pem).unwrap();
    std::fs::write(path.join("ca-b.pem"), &ca_b.pem).unwrap();
    write_pair(path, "alice", &ca_a.leaf("alice", Usage::Client, 10));
    write_pair(path, "bob", &ca_b.leaf("bob", Usage::Client, 20));

    let http = start_http_upstream();
    let echo = start_echo_upstream();
    let config = |port: u16| {
        format!(
            r#"
[[endpoints]]
name = "a"
kind = "http"
listen = "127.0.0.1:{port}"
domain = "a.test"
upstream = "{http}"
crt = "a.crt"
key = "a.key"
mutual_tls_cas = ["ca-a.pem"]

[[endpoints]]
name = "b"
kind = "tls"
listen = "127.0.0.1:{port}"
domain = "b.test"
upstream = "{echo}"
crt = "b.crt"
key = "b.key"
mutual_tls_cas = ["ca-b.pem"]
default = true
"#
        )
    };
    let moat = Moat::start_on_free_port(path, 2, |port| {
        std::fs::write(path.join("moat.toml"), config(port)).unwrap();
        START_ALL.map(String::from).to_vec()
    });
    assert_eq!(
        moat.endpoints[0].1, moat.endpoints[1].1,
        "one shared address"
    );
    SharedAddress { _dir: dir, moat }
}

/// Connects as `client` (a key pair name in the test dir) asking for `sni`.
fn connect(
    setup: &SharedAddress,
    sni: Option<&str>,
    client: &str,
    send: &[u8],
) -> Result<String, rustls::Error> {
    let dir = setup._dir.path();
    let (crt, key) = (
        dir.join(format!("{client}.crt")),
        dir.join(format!("{client}.key")),
    );
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: Some((&crt, &key)),
        tls12_only: false,
        send,
        // The echo upstream answers once the client half-closes; an HTTP server would take the
        // close as the end of the connection.
        half_close: !send.starts_with(b"GET"),
    };
    rustls_exchange(setup.moat.port(), client_config(&options), sni, &options).outcome
}

/// A request for a.test: on a shared address the Host must name the endpoint the SNI chose.
const GET_A: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

#[test]
fn each_hostname_on_a_shared_address_accepts_only_its_own_clients() {
    let setup = start_shared_address();

    // a.test: its certificate (the client checks the name), its CA, its HTTP upstream.
    let response = connect(&setup, Some("a.test"), "alice", GET_A).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("hello from upstream /"), "{response}");
    assert_eq!(
        connect(&setup, Some("a.test"), "bob", GET_A).unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );

    // b.test: its own certificate, CA and TCP echo upstream.
    assert_eq!(
        connect(&setup, Some("b.test"), "bob", b"ping").unwrap(),
        "ping"
    );
    assert_eq!(
        connect(&setup, Some("b.test"), "alice", b"ping").unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    );
    let log = setup.moat.wait_for_log("client certificate refused");
    assert!(log.contains("endpoint=b"), "{log}");
}

#[test]
fn unknown_sni_gets_unrecognized_name_and_no_sni_goes_to_the_default() {
    let setup = start_shared_address();
    assert_eq!(
        connect(&setup, Some("c.test"), "alice", GET_ROOT).unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName)
    );
    let log = setup
        .moat
        .wait_for_log("no endpoint on this address serves the requested name");
    assert!(log.contains("sni=c.test"), "{log}");

    // Without SNI the default endpoint (b, whose certificate also names localhost) answers.
    assert_eq!(connect(&setup, None, "bob", b"ping").unwrap(), "ping");
}

#[test]
fn without_a_default_a_client_without_sni_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let server_ca = TestCa::new("Server CA");
    write_pair(path, "a", &server_ca.server_leaf_for(&["a.test"], 1));
    write_pair(path, "b", &server_ca.server_leaf_for(&["b.test"], 2));
    let http = start_http_upstream();
    std::fs::write(path.join("server-ca.pem"), &server_ca.pem).unwrap();
    let moat = Moat::start_on_free_port(path, 2, |port| {
        let mut config = String::new();
        for name in ["a", "b"] {
            config.push_str(&format!(
                "[[endpoints]]\nname = \"{name}\"\nkind = \"http\"\nlisten = \"127.0.0.1:{port}\"\n\
                 domain = \"{name}.test\"\nupstream = \"{http}\"\ncrt = \"{name}.crt\"\nkey = \"{name}.key\"\n\n"
            ));
        }
        std::fs::write(path.join("moat.toml"), config).unwrap();
        START_ALL.map(String::from).to_vec()
    });
    let options = ClientOptions {
        server_ca: &path.join("server-ca.pem"),
        identity: None,
        tls12_only: false,
        send: GET_ROOT,
        half_close: false,
    };
    let exchange = rustls_exchange(moat.port(), client_config(&options), None, &options);
    assert_eq!(
        exchange.outcome.unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName)
    );
    moat.wait_for_log(
        "the client sent no SNI and no endpoint on this address is marked default = true",
    );
}

#[test]
fn no_ca_hints_leaves_the_ca_names_out_of_the_certificate_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let ca = TestCa::new("Hinted Clients CA");
    std::fs::write(path.join("cas.pem"), &ca.pem).unwrap();
    let upstream = start_http_upstream().to_string();
    let base = [
        "http",
        upstream.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--mutual-tls-cas",
        "cas.pem",
    ];

    let hinting = Moat::start(path, &base, 1);
    let output = s_client(path, hinting.port(), &[]);
    assert!(
        output.contains("Acceptable client certificate CA names")
            && output.contains("Hinted Clients CA"),
        "{output}"
    );
    drop(hinting);

    let mut args = base.to_vec();
    args.push("--no-ca-hints");
    let silent = Moat::start(path, &args, 1);
    let output = s_client(path, silent.port(), &[]);
    assert!(
        output.contains("No client certificate CA names sent"),
        "{output}"
    );
    assert!(!output.contains("Hinted Clients CA"), "{output}");
}
