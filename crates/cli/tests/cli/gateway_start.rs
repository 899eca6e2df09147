//! `moat start --config moat.toml [NAME...|--all]`: the endpoints of a file, chosen by name.

use crate::gateway_support;

use std::path::Path;
use std::time::Duration;

use gateway_support::{
    ClientOptions, GET_ROOT, Moat, TestCa, Usage, free_port, moat_output, rustls_request,
    start_echo_upstream, start_http_upstream, write_pair,
};

/// Writes `etc/moat.toml` with endpoints "web" (http, on `web_listen`) and "echo" (tls, port 0).
fn write_config(dir: &Path, web_listen: &str) {
    let server_ca = TestCa::new("Server CA");
    std::fs::write(dir.join("server-ca.crt"), &server_ca.pem).unwrap();
    std::fs::create_dir(dir.join("etc")).unwrap();
    write_pair(
        &dir.join("etc"),
        "server",
        &server_ca.leaf("localhost", Usage::Server, 1),
    );
    let client_ca = TestCa::new("Client CA");
    std::fs::write(dir.join("etc/cas.pem"), &client_ca.pem).unwrap();
    write_pair(
        dir,
        "client",
        &client_ca.leaf("start-client", Usage::Client, 2),
    );
    let web = start_http_upstream();
    let echo = start_echo_upstream();
    let config = format!(
        r#"
[[endpoints]]
name = "web"
kind = "http"
listen = "{web_listen}"
upstream = "http://{web}"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]

[[endpoints]]
name = "echo"
kind = "tls"
listen = "127.0.0.1:0"
upstream = "{echo}"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["cas.pem"]
terminate_at = "agent"
"#
    );
    std::fs::write(dir.join("etc/moat.toml"), config).unwrap();
}

fn request(dir: &Path, port: u16, send: &[u8], half_close: bool) -> String {
    let (ca, cert, key) = (
        dir.join("server-ca.crt"),
        dir.join("client.crt"),
        dir.join("client.key"),
    );
    rustls_request(
        port,
        &ClientOptions {
            server_ca: &ca,
            identity: Some((&cert, &key)),
            tls12_only: false,
            send,
            half_close,
        },
    )
    .unwrap()
}

#[test]
fn start_all_runs_every_endpoint_of_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    write_config(dir, "127.0.0.1:0");
    let moat = Moat::start(dir, &["start", "--config", "etc/moat.toml", "--all"], 2);
    let names: Vec<&str> = moat
        .endpoints
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["web", "echo"]);
    assert!(moat.stdout[1].starts_with("moat: endpoint echo listening on tls://127.0.0.1:"));
    let web = request(dir, moat.endpoints[0].1.port(), GET_ROOT, false);
    assert!(web.ends_with("hello from upstream /"), "{web}");
    assert_eq!(
        request(dir, moat.endpoints[1].1.port(), b"hi\n", true),
        "hi\n"
    );
}

#[test]
fn start_by_name_runs_only_that_endpoint() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // web gets a fixed port so the test can see that nothing listens there.
    let web_port = free_port();
    write_config(dir, &format!("127.0.0.1:{web_port}"));
    let moat = Moat::start(dir, &["start", "--config", "etc/moat.toml", "echo"], 1);
    assert_eq!(moat.endpoints.len(), 1);
    assert_eq!(moat.endpoints[0].0, "echo");
    assert_eq!(
        request(dir, moat.port(), b"only echo\n", true),
        "only echo\n"
    );
    // "Only": web was not started. Binding its port succeeds only if no socket listens on it,
    // and neither moat's output nor its log names web.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", web_port)).is_ok(),
        "something listens on web's port {web_port}"
    );
    let mut stdout = moat.stdout.clone();
    while let Some(line) = moat.next_stdout_line(Duration::from_millis(300)) {
        stdout.push(line);
    }
    assert!(
        stdout.iter().all(|line| !line.contains("web")),
        "{stdout:#?}"
    );
    let log = moat.log();
    assert!(!log.contains("web"), "{log}");

    let output = moat_output(dir, &["start", "--config", "etc/moat.toml", "mail"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "moat: etc/moat.toml: no endpoint named \"mail\"; the file has \"web\", \"echo\"\n"
    );
    let output = moat_output(dir, &["start", "--config", "etc/moat.toml"]);
    assert_eq!(output.status.code(), Some(2), "names or --all are required");
}

#[test]
fn a_startup_error_names_its_endpoint_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = moat_output(
        dir.path(),
        &["http", "https://127.0.0.1:9", "--listen", "127.0.0.1:0"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("moat: endpoint http: the upstream is https:// but no upstream CA is set"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("endpoint http:").count(), 1, "{stderr}");
}

#[test]
fn a_fixed_port_taken_before_moat_binds_it_is_retried_on_another() {
    // The test kit's guard against the free-port race: the first port offered is taken by
    // another socket before moat starts, so moat fails to bind it and starts again elsewhere.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    write_config(dir, "127.0.0.1:0");
    let upstream = start_http_upstream().to_string();
    let mut taken = Vec::new();
    let moat = Moat::start_on_free_port(dir, 1, |port| {
        if taken.is_empty() {
            taken.push(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        }
        let listen = format!("127.0.0.1:{port}");
        [
            "http",
            &upstream,
            "--listen",
            &listen,
            "--crt",
            "etc/server.crt",
            "--key",
            "etc/server.key",
            "--mutual-tls-cas",
            "etc/cas.pem",
        ]
        .map(String::from)
        .to_vec()
    });
    let taken_port = taken[0].local_addr().unwrap().port();
    assert_ne!(moat.port(), taken_port);
    let web = request(dir, moat.port(), GET_ROOT, false);
    assert!(web.ends_with("hello from upstream /"), "{web}");
}
