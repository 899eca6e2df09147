//! The ways around the rules a hostile client tries, each as a table of forms against real
//! upstreams: path spellings against nginx, `Upgrade: h2c` against hypercorn, identity header
//! aliases against Python's wsgiref, Host/SNI mismatches, slow and malformed bodies.

use crate::common::words;
use crate::gateway_support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_support::{
    ClientOptions, Moat, START_ALL, TestCa, UpstreamProcess, Usage, client_config, curl,
    rustls_request, start_nginx, start_python, write_pair,
};
use rustls_pki_types::ServerName;

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

/// nginx chooses its location from the path it resolved itself and names it in the body.
const NGINX_LOCATIONS: &str = r#"
location /public/ { return 200 "PUBLIC uri=$uri\n"; }
location /admin/ { return 200 "ADMIN uri=$uri\n"; }
location /cel/secret { return 200 "CELSECRET uri=$uri\n"; }
location / { return 200 "OTHER uri=$uri\n"; }
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

/// `GET TARGET` with `Connection: close`, sent byte for byte as written.
fn get_raw(dir: &Path, port: u16, client: Option<&str>, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_exchange(dir, port, client, request.as_bytes())
}

/// The status code of a raw HTTP/1.1 response.
fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn every_path_form_is_refused_or_reaches_the_upstream_as_a_path_the_rules_allowed() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let nginx = start_nginx(dir.path(), NGINX_LOCATIONS);
    let upstream = format!("http://127.0.0.1:{}", nginx.port);
    let moat = Moat::serve_mtls(
        dir.path(),
        "http",
        &upstream,
        &["--policy", "policy.toml", "--audit-log", "audit.jsonl"],
    );
    let port = moat.port();

    // Without a certificate only /public/* may be reached; each form is sent byte for byte.
    let forms = [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2E/admin/x",
        "/public/%2e%2E/admin/x",
        "/public/.%2e/admin/x",
        "/public/%2e./admin/x",
        "/public/x/../../admin/x",
        "/public/./../admin/x",
        "/public//../admin/x",
        "//admin/x",
        "/./admin/x",
        "/public/%2e%2e/%61dmin/x",
        "/public/..;/admin/x",
        "/public/..;x=1/admin/x",
        "/admin;public/x",
        "/public/%2e%2e%2fadmin/x",
        "/public%2f..%2fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..%5Cadmin%5Cx",
        "/public\\..\\admin\\x",
        "/public/%252e%252e/admin/x",
        "/public/%25%32%65%25%32%65/admin/x",
        "/public/%252E%252E%252Fadmin/x",
        "/public/..%00/admin/x",
        "/public/%00/../admin/x",
        "/public/%c0%ae%c0%ae/admin/x",
        "/public/%e0%80%ae%e0%80%ae/admin/x",
        "/PUBLIC/../admin/x",
        "/public/x/..//admin/x",
        "/public/..",
        "/public/%2e%2e",
        "/admin/x",
    ];
    let mut statuses = Vec::new();
    for form in forms {
        let response = get_raw(dir.path(), port, None, form);
        let status = status_of(&response);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        match status {
            400 | 403 => {}
            200 => assert!(
                body.starts_with("PUBLIC uri=/public/"),
                "{form:?} reached nginx outside /public/: {body:?}"
            ),
            other => panic!("{form:?}: unexpected status {other}: {response}"),
        }
        statuses.push(status);
    }
    // The table exercises each outcome: canonicalised and refused by rule, refused as malformed,
    // and let through to a public path.
    for expected in [200, 400, 403] {
        assert!(
            statuses.contains(&expected),
            "no {expected} in {statuses:?}"
        );
    }

    // The same path with a certificate does reach /admin/: the table could have failed.
    let response = get_raw(dir.path(), port, Some("alice"), "/public/%2e%2e/admin/x");
    assert!(response.contains("ADMIN uri=/admin/x"), "{response}");

    // HTTP/2 :path is canonicalised the same way (curl --path-as-is keeps the dot segments).
    let h2 = |client: Option<&str>, path: &str| {
        let url = format!("https://localhost:{port}{path}");
        let mut args = vec!["--http2", "--path-as-is", "--cacert", "server-ca.pem"];
        if client.is_some() {
            args.extend(["--cert", "alice.crt", "--key", "alice.key"]);
        }
        args.extend(["-w", "\n%{http_code} %{http_version}", url.as_str()]);
        let (_, out, err) = curl(dir.path(), &args);
        assert!(out.ends_with(" 2"), "not HTTP/2: {out} {err}");
        out
    };
    for path in ["/public/../admin/x", "/public/%2e%2e/admin/x", "//admin/x"] {
        let out = h2(None, path);
        assert!(out.ends_with("403 2"), "HTTP/2 {path}: {out}");
    }
    assert!(h2(Some("alice"), "/public/../admin/x").starts_with("ADMIN uri=/admin/x"));
    assert!(h2(None, "/public/%2e%2e%2fadmin/x").ends_with("400 2"));

    // req.url.path in CEL sees the canonical path too.
    for form in [
        "/cel/x/../secret",
        "/cel/%73ecret",
        "/cel//secret",
        "/cel/./secret",
    ] {
        let response = get_raw(dir.path(), port, Some("alice"), form);
        assert_eq!(status_of(&response), 403, "{form:?}: {response}");
        assert!(!response.contains("CELSECRET"), "{form:?}: {response}");
    }
    let response = get_raw(dir.path(), port, Some("alice"), "/cel/other");
    assert!(response.contains("OTHER uri=/cel/other"), "{response}");

    // The audit event and the log name the path the rules judged.
    drop(moat);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let judged = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "http_request" && event["path"] == "/admin/x")
        .expect("an audit event for the canonical /admin/x");
    assert_eq!(judged["status"], 403);
    assert_eq!(judged["rule"], "members");
}

#[test]
fn verify_shows_the_canonical_path_the_rules_judge() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let verify = |path: &str| {
        gateway_support::moat_output(
            dir.path(),
            &[
                "verify",
                "--mutual-tls-cas",
                "cas.pem",
                "--policy",
                "policy.toml",
                "--path",
                path,
            ],
        )
    };
    let output = verify("/public/%2e%2e/admin/x");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stdout.contains(
            "path: /public/%2e%2e/admin/x -> canonical /admin/x (escaped unreserved characters \
             decoded, dot segments removed)"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("by rule \"members\""), "{stderr}");

    let output = verify("/public/..;/admin");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("REFUSED with 400: path \"/public/..;/admin\": the request path has a ';'"),
        "{stderr}"
    );

    let output = verify("/public/x");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("path: /public/x (already canonical)")
    );
}

/// An ASGI app for hypercorn that says which protocol and path it served and whether it saw an
/// `Upgrade` header.
const HYPERCORN_APP: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = f"HTTP/{scope['http_version']} {scope['path']} upgrade={headers.get('upgrade', '-')}\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
"#;

const H2C_UPGRADE: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                           HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

#[test]
fn no_upgrade_but_websocket_turns_a_connection_into_an_unjudged_pipe() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(dir.path().join("echo_app.py"), HYPERCORN_APP).unwrap();
    let hypercorn = start_python(
        dir.path(),
        &[
            "-m",
            "hypercorn",
            "echo_app:app",
            "--bind",
            "127.0.0.1:{port}",
        ],
    );

    // The upstream is h2c-capable: asked directly, it switches.
    let mut direct = TcpStream::connect(("127.0.0.1", hypercorn.port)).unwrap();
    direct
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(direct, "GET /x HTTP/1.1\r\nHost: up\r\n{H2C_UPGRADE}\r\n").unwrap();
    let mut head = [0u8; 32];
    let read = direct.read(&mut head).unwrap();
    assert!(
        head[..read].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head[..read])
    );

    let upstream = format!("http://127.0.0.1:{}", hypercorn.port);
    let moat = Moat::serve_mtls(dir.path(), "http", &upstream, &["--policy", "policy.toml"]);
    let port = moat.port();
    // A client without a certificate asks to switch a public request to h2c, then sends a
    // request for a protected path on the same connection.
    for upgrade in [
        H2C_UPGRADE.to_owned(),
        "Connection: Upgrade\r\nUpgrade: h2c\r\n".to_owned(),
        "Connection: upgrade\r\nUpgrade: websocket, h2c\r\n".to_owned(),
        "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n".to_owned(),
    ] {
        let raw = format!(
            "GET /public/x HTTP/1.1\r\nHost: localhost\r\n{upgrade}\r\n\
             GET /admin/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let response = raw_exchange(dir.path(), port, None, raw.as_bytes());
        assert!(!response.contains(" 101 "), "{upgrade:?}: {response}");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{upgrade:?}: {response}"
        );
        assert!(
            response.contains("HTTP/1.1 /public/x upgrade=-"),
            "the upstream saw the Upgrade header ({upgrade:?}): {response}"
        );
        // The second request was judged: no certificate, protected path.
        assert!(response.contains("HTTP/1.1 403"), "{upgrade:?}: {response}");
        assert!(
            !response.contains("/admin/x upgrade"),
            "{upgrade:?}: {response}"
        );
    }
    moat.wait_for_log("Upgrade header removed: moat relays only WebSocket upgrades");
}

/// A WSGI app on Python's wsgiref, which maps `_` and `-` in header names to the same CGI
/// variable, printing what a CGI-style upstream believes about the caller.
const WSGIREF_APP: &str = r#"
import sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

def app(environ, start_response):
    names = ["HTTP_MOAT_CLIENT_SUBJECT", "HTTP_CLIENT_CERT", "HTTP_X_FORWARDED_FOR",
             "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED"]
    body = "".join(f"{name}={environ.get(name, '-')}\n" for name in names)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]

make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
"#;

#[test]
fn identity_and_forwarding_headers_cannot_be_spoofed_in_any_spelling() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(dir.path().join("wsgi_app.py"), WSGIREF_APP).unwrap();
    let wsgi = start_python(dir.path(), &["wsgi_app.py", "{port}"]);
    let upstream = format!("http://127.0.0.1:{}", wsgi.port);
    let moat = Moat::serve_mtls(dir.path(), "http", &upstream, &[]);
    let url = format!("https://localhost:{}/", moat.port());
    let spoofs = [
        "Moat_Client_Subject: CN=admin",
        "moat_client_subject: CN=admin",
        "Moat-Client_Subject: CN=admin",
        "Client_Cert: :QUJD:",
        "X_Forwarded_For: 203.0.113.66",
        "X-Forwarded_Host: evil.example",
        "Forwarded: for=203.0.113.66;host=evil.example",
    ];
    for protocol in ["--http1.1", "--http2"] {
        let mut args = [&[protocol][..], &CURL_AS_ALICE].concat();
        for spoof in &spoofs {
            args.extend(["-H", spoof]);
        }
        args.push(&url);
        let (code, out, err) = curl(dir.path(), &args);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("HTTP_MOAT_CLIENT_SUBJECT=CN=alice\n"),
            "{protocol}: {out}"
        );
        assert!(!out.contains("admin"), "{protocol}: {out}");
        assert!(!out.contains("QUJD"), "{protocol}: {out}");
        assert!(out.contains("HTTP_CLIENT_CERT=:"), "{protocol}: {out}");
        assert!(
            out.contains("HTTP_X_FORWARDED_FOR=127.0.0.1\n"),
            "{protocol}: {out}"
        );
        assert!(!out.contains("evil.example"), "{protocol}: {out}");
        assert!(!out.contains("203.0.113.66"), "{protocol}: {out}");
    }
}

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

/// An upstream that reads whole request bodies before answering (as most do).
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

/// A ClientHello whose SNI is `name_length` bytes, plus an unknown extension of `padding` bytes
/// when not 0, in 16 KiB records; `claimed` overrides the handshake message's length field (to
/// announce more than is sent).
fn client_hello(name_length: usize, padding: usize, claimed: Option<usize>) -> Vec<u8> {
    let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let name = vec![b'a'; name_length];
    let mut sni = be16(name.len() + 3).to_vec();
    sni.push(0);
    sni.extend(be16(name.len()));
    sni.extend(&name);
    let mut extensions = vec![0, 0];
    extensions.extend(be16(sni.len()));
    extensions.extend(&sni);
    if padding > 0 {
        // signature_algorithms (ecdsa_secp256r1_sha256), which rustls needs to accept a hello.
        extensions.extend([0, 13, 0, 4, 0, 2, 4, 3]);
        extensions.extend([0xfe, 0xfe]);
        extensions.extend(be16(padding));
        extensions.extend(vec![0u8; padding]);
    }
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend(be16(extensions.len()));
    body.extend(&extensions);
    let length = u32::try_from(claimed.unwrap_or(body.len()))
        .unwrap()
        .to_be_bytes();
    let mut handshake = vec![1, length[1], length[2], length[3]];
    handshake.extend(&body);
    let mut records = Vec::new();
    for chunk in handshake.chunks(16 * 1024) {
        records.extend([22, 3, 1]);
        records.extend(be16(chunk.len()));
        records.extend(chunk);
    }
    records
}

#[test]
fn an_oversized_client_hello_is_refused_and_logged_as_such() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let upstream = gateway_support::start_http_upstream();
    let moat = Moat::serve_mtls(dir.path(), "http", &upstream.to_string(), &[]);
    let send = |bytes: &[u8]| {
        let mut socket = TcpStream::connect(("127.0.0.1", moat.port())).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = socket.write_all(bytes);
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        answer
    };

    // SNIs of 20,000 and 65,000 bytes: a whole ClientHello that rustls refuses with an alert.
    for length in [20_000, 65_000] {
        let answer = send(&client_hello(length, 0, None));
        assert_eq!(
            answer.first(),
            Some(&21),
            "no alert record for a {length}-byte SNI"
        );
    }
    let log = moat.wait_for_log("ServerNameMustContainOneHostName");
    assert_eq!(
        log.matches("ServerNameMustContainOneHostName").count(),
        2,
        "{log}"
    );
    // A handshake message announcing more than the 64 KiB rustls takes.
    let mut announced = client_hello(16_000, 0, Some(100_000));
    announced.extend(client_hello(60_000, 0, None));
    send(&announced);
    moat.wait_for_log("HandshakePayloadTooLarge");
    // A 50 KiB ClientHello with 20 KiB more behind it: more than rustls buffers before the handshake.
    let mut flood = client_hello(10, 50_000, None);
    flood.extend(vec![23u8; 20_000]);
    send(&flood);
    let log = moat
        .wait_for_log("handshake refused: the ClientHello and what came with it exceed the 64 KiB");
    assert!(
        !log.contains("connection closed during the handshake"),
        "{log}"
    );
}
