//! The ngrok mTLS guide (seeds/000) verbatim against `moat http`: an encrypted RSA 4096 CA and an
//! X.509 v1 client certificate made with its openssl commands, then curl without and with it.

use crate::common::words;
use crate::gateway_support;

use gateway_support::{Moat, curl, openssl, start_http_upstream, write_server_pki};

const PASS: &str = "pass:guide-passphrase";

#[test]
fn ngrok_guide_client_certificate_gets_through_and_curl_without_one_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();

    // seeds/000, with -passout/-passin and -subj instead of the prompts.
    openssl(
        dir,
        &format!("genrsa -aes256 -passout {PASS} -out ca.key 4096"),
    );
    openssl(
        dir,
        &format!(
            "req -new -x509 -sha256 -days 365 -key ca.key -passin {PASS} -subj /CN=ngrok-guide-CA -out ca.crt"
        ),
    );
    openssl(dir, "genrsa -out ngrokclient.key 2048");
    openssl(
        dir,
        "req -new -key ngrokclient.key -subj /CN=ngrokclient -out ngrokclient.csr",
    );
    let serial = format!("0x{}", hex_serial());
    openssl(
        dir,
        &format!(
            "x509 -req -days 365 -sha256 -in ngrokclient.csr -CA ca.crt -CAkey ca.key -passin {PASS} \
             -set_serial {serial} -out ngrokclient.crt"
        ),
    );
    // The guide's command makes a version 1 certificate: the case webpki alone would refuse.
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "ngrokclient.crt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"));
    // seeds/001: one file holding the certificate and its key.
    let combined = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("ngrokclient.crt")).unwrap(),
        std::fs::read_to_string(dir.join("ngrokclient.key")).unwrap()
    );
    std::fs::write(dir.join("client-cert-and-key.pem"), combined).unwrap();

    // The server certificate comes from a separate CA the clients trust.
    write_server_pki(dir, "Server CA", "server-ca.crt", 7);

    let upstream = start_http_upstream();
    let upstream_port = upstream.port().to_string();
    let moat = Moat::serve(
        dir,
        "http",
        &upstream_port,
        &[
            "--mutual-tls-cas",
            "ca.crt",
            "--crt",
            "server.crt",
            "--key",
            "server.key",
        ],
    );
    let url = format!("https://localhost:{}/guide", moat.port());
    let resolve = format!("localhost:{}:127.0.0.1", moat.port());

    // curl to the guide's URL trusting the server CA, with `identity` flags.
    let curl_as = |identity: &str| {
        let trust = ["--cacert", "server-ca.crt", "--resolve", &resolve];
        curl(dir, &[&trust[..], &words(identity), &[&url]].concat())
    };

    let (code, _, stderr) = curl_as("");
    // 56: failure receiving data — the server's certificate_required alert.
    assert_eq!(code, 56, "curl without a certificate: {stderr}");
    assert!(
        stderr.contains("alert certificate required"),
        "curl without a certificate: {stderr}"
    );

    let (code, body, stderr) = curl_as("--cert ngrokclient.crt --key ngrokclient.key");
    assert_eq!(code, 0, "curl with the guide's certificate: {stderr}");
    assert_eq!(body, "hello from upstream /guide");

    let (code, body, stderr) = curl_as("--cert client-cert-and-key.pem");
    assert_eq!(code, 0, "curl with the combined PEM: {stderr}");
    assert_eq!(body, "hello from upstream /guide");

    moat.wait_for_log("reason=\"no_certificate\"");
    let log = moat.log();
    assert!(
        log.contains("client_subject=\"CN=ngrokclient\""),
        "log:\n{log}"
    );
}

/// 16 random bytes in hex, like `openssl rand -hex 16`.
fn hex_serial() -> String {
    let output = std::process::Command::new("openssl")
        .args(["rand", "-hex", "16"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
