//! The ways around the rules a hostile client tries, each as a table of forms against real
//! upstreams: path spellings against nginx, `Upgrade: h2c` against hypercorn, identity header
//! aliases against Python's wsgiref, Host/SNI mismatches, slow and malformed bodies. One
//! sub-module per kind of trick; the policy, certificates and raw TLS client they share are here.

mod bodies;
mod client_hello;
mod host_and_sni;
mod identity_headers;
mod paths;
mod upgrades;

use crate::gateway_support;

use std::path::Path;

use gateway_support::{ClientOptions, TestCa, Usage, rustls_request, write_pair};

/// `/public/*` needs no certificate, `/cel/*` is guarded by a CEL expression on
/// `req.url.path`, everything else needs any valid certificate.
const POLICY: &str = r#"
[[rules]]
name = "public"
paths = ["/public/*"]
action = "bypass"

[[rules]]
name = "cel-guard"
paths = ["/cel/*"]
action = "allow"
include = [{ valid_certificate = true }]
expressions = ["!req.url.path.startsWith('/cel/secret')"]

[[rules]]
name = "members"
action = "allow"
include = [{ valid_certificate = true }]
"#;

/// Server certificate for localhost, a.example.com and b.example.com (`server.crt`, trusted via
/// `server-ca.pem`), client CA `cas.pem` with client `alice`, a second client CA `other-cas.pem`
/// with client `olga`, and `policy.toml`.
fn setup(dir: &Path) {
    let server_ca = TestCa::new("Hostile Test Server CA");
    std::fs::write(dir.join("server-ca.pem"), &server_ca.pem).unwrap();
    write_pair(
        dir,
        "server",
        &server_ca.server_leaf_for(&["localhost", "a.example.com", "b.example.com"], 1),
    );
    let clients = TestCa::new("Hostile Test Clients CA");
    std::fs::write(dir.join("cas.pem"), &clients.pem).unwrap();
    write_pair(dir, "alice", &clients.leaf("alice", Usage::Client, 10));
    let others = TestCa::new("Hostile Test Other CA");
    std::fs::write(dir.join("other-cas.pem"), &others.pem).unwrap();
    write_pair(dir, "olga", &others.leaf("olga", Usage::Client, 20));
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
}

/// curl flags that trust the server CA of [`setup`] and present its client `alice`.
const CURL_AS_ALICE: [&str; 6] = [
    "--cacert",
    "server-ca.pem",
    "--cert",
    "alice.crt",
    "--key",
    "alice.key",
];

/// Sends `raw` over TLS (SNI localhost, no ALPN: HTTP/1.1) as `client` and returns all the
/// server sent back.
fn raw_exchange(dir: &Path, port: u16, client: Option<&str>, raw: &[u8]) -> String {
    let (cert, key) = (
        dir.join(format!("{}.crt", client.unwrap_or(""))),
        dir.join(format!("{}.key", client.unwrap_or(""))),
    );
    let options = ClientOptions {
        server_ca: &dir.join("server-ca.pem"),
        identity: client.map(|_| (cert.as_path(), key.as_path())),
        tls12_only: false,
        send: raw,
        half_close: false,
    };
    rustls_request(port, &options).unwrap_or_else(|error| panic!("TLS failed: {error}"))
}

/// The status code of a raw HTTP/1.1 response.
fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}
