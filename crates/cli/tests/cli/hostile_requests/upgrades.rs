//! Protocol upgrades against hypercorn: only WebSocket turns a connection into an unjudged pipe.

use crate::gateway_support;

use super::{raw_exchange, setup};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use gateway_support::{Moat, start_python};

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
