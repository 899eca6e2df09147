//! `moat pki issue`: client and server certificates that openssl, curl and browsers accept.

use crate::common;

use common::{Scratch, mode, text_of};

fn ca() -> Scratch {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "Issue Test CA"]);
    scratch
}

#[test]
fn client_certificate_passes_openssl_verify_as_sslclient_only() {
    let scratch = ca();
    let stdout = scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "alice",
        "--org",
        "Example",
        "--ou",
        "Admins",
        "--san",
        "email:alice@example.com",
        "--out",
        "alice",
    ]);
    assert!(
        stdout.contains("wrote alice.crt, alice.key for O=Example, OU=Admins, CN=alice (serial "),
        "{stdout}"
    );
    let (ok, output) =
        scratch.openssl_verify(&["-CAfile", "ca/ca.crt", "-purpose", "sslclient", "alice.crt"]);
    assert!(ok, "{output}");
    let (ok, output) =
        scratch.openssl_verify(&["-CAfile", "ca/ca.crt", "-purpose", "sslserver", "alice.crt"]);
    assert!(
        !ok && output.contains("unsuitable certificate purpose"),
        "{output}"
    );
    let text = text_of(&scratch, "alice.crt");
    assert!(text.contains("Version: 3 (0x2)"), "{text}");
    assert!(
        text.contains("Subject: O = Example, OU = Admins, CN = alice"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("email:alice@example.com"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert_eq!(mode(&scratch.join("alice.key")), 0o600);
    scratch.openssl(&["pkey", "-in", "alice.key", "-noout"]);
    // 365 days by default.
    let soon = scratch.run(
        "openssl",
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-checkend",
            &(364 * 86400).to_string(),
        ],
    );
    assert!(soon.status.success());
    let late = scratch.run(
        "openssl",
        &[
            "x509",
            "-in",
            "alice.crt",
            "-noout",
            "-checkend",
            &(366 * 86400).to_string(),
        ],
    );
    assert!(!late.status.success());
}

#[test]
fn server_certificate_gets_its_common_name_as_san_and_397_days() {
    let scratch = ca();
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "server",
        "--cn",
        "app.example.com",
        "--out",
        "app",
    ]);
    let (ok, output) = scratch.openssl_verify(&[
        "-CAfile",
        "ca/ca.crt",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "app.example.com",
        "app.crt",
    ]);
    assert!(ok, "{output}");
    let (ok, output) =
        scratch.openssl_verify(&["-CAfile", "ca/ca.crt", "-purpose", "sslclient", "app.crt"]);
    assert!(!ok, "{output}");
    let text = text_of(&scratch, "app.crt");
    assert!(text.contains("DNS:app.example.com"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let soon = scratch.run(
        "openssl",
        &[
            "x509",
            "-in",
            "app.crt",
            "-noout",
            "-checkend",
            &(396 * 86400).to_string(),
        ],
    );
    assert!(soon.status.success());
    let late = scratch.run(
        "openssl",
        &[
            "x509",
            "-in",
            "app.crt",
            "-noout",
            "-checkend",
            &(398 * 86400).to_string(),
        ],
    );
    assert!(!late.status.success());
}

#[test]
fn every_san_kind_and_key_type_is_encoded() {
    let scratch = ca();
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "server",
        "--cn",
        "svc",
        "--key-type",
        "rsa-2048",
        "--san",
        "dns:svc.internal",
        "--san",
        "ip:10.1.2.3",
        "--san",
        "ip:::1",
        "--san",
        "uri:spiffe://example.org/svc",
        "--san",
        "email:ops@example.org",
        "--days",
        "30",
        "--out",
        "svc",
    ]);
    let text = text_of(&scratch, "svc.crt");
    for expected in [
        "DNS:svc.internal",
        "IP Address:10.1.2.3",
        "IP Address:0:0:0:0:0:0:0:1",
        "URI:spiffe://example.org/svc",
        "email:ops@example.org",
        "Public-Key: (2048 bit)",
        "Key Encipherment",
    ] {
        assert!(text.contains(expected), "{expected} missing: {text}");
    }
    let late = scratch.run(
        "openssl",
        &[
            "x509",
            "-in",
            "svc.crt",
            "-noout",
            "-checkend",
            &(31 * 86400).to_string(),
        ],
    );
    assert!(!late.status.success(), "--days 30 not applied");
    let (ok, output) = scratch.openssl_verify(&[
        "-CAfile",
        "ca/ca.crt",
        "-purpose",
        "sslserver",
        "-verify_ip",
        "10.1.2.3",
        "svc.crt",
    ]);
    assert!(ok, "{output}");
}

#[test]
fn serial_is_random_positive_128_bit_and_recorded_in_the_ledger() {
    let scratch = ca();
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "a",
        "--out",
        "a",
    ]);
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "b",
        "--out",
        "b",
    ]);
    let a = common::serial_of(&scratch, "a.crt").to_lowercase();
    let b = common::serial_of(&scratch, "b.crt").to_lowercase();
    assert_ne!(a, b);
    let a_trimmed = a.trim_start_matches('0');
    assert!(a_trimmed.len() > 24 && a_trimmed.len() <= 32, "{a}");
    let ledger: serde_json::Value = serde_json::from_str(&scratch.read("ca/ledger.json")).unwrap();
    let serials: Vec<&str> = ledger["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, vec![a_trimmed, b.trim_start_matches('0')]);
    assert_eq!(ledger["certificates"][0]["subject"], "CN=a");
    assert_eq!(ledger["certificates"][0]["profile"], "client");
}

#[test]
fn combined_pem_holds_certificate_then_key_for_curl() {
    let scratch = ca();
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "bob",
        "--out",
        "bob",
        "--combined",
    ]);
    let combined = scratch.read("bob.pem");
    let cert_at = combined.find("BEGIN CERTIFICATE").unwrap();
    let key_at = combined.find("BEGIN PRIVATE KEY").unwrap();
    assert!(cert_at < key_at);
    assert_eq!(
        combined,
        format!("{}{}", scratch.read("bob.crt"), scratch.read("bob.key"))
    );
    assert_eq!(mode(&scratch.join("bob.pem")), 0o600);
    // openssl reads the certificate and the key from the one file, and they match.
    let cert_key = scratch.openssl(&["x509", "-in", "bob.pem", "-noout", "-pubkey"]);
    let key_pub = scratch.openssl(&["pkey", "-in", "bob.pem", "-pubout"]);
    assert_eq!(cert_key, key_pub);
}

#[test]
fn p12_bundle_opens_with_openssl_pkcs12_and_the_password_file() {
    let scratch = ca();
    scratch.write("p12pass", "bundle secret\n");
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "carol",
        "--out",
        "carol",
        "--p12",
        "--p12-password-file",
        "p12pass",
    ]);
    assert_eq!(mode(&scratch.join("carol.p12")), 0o600);
    let info = scratch.openssl(&[
        "pkcs12",
        "-info",
        "-in",
        "carol.p12",
        "-passin",
        "file:p12pass",
        "-nodes",
    ]);
    assert!(info.contains("subject=CN = carol"), "{info}");
    assert!(info.contains("AES-256-CBC"), "{info}");
    assert!(info.contains("BEGIN PRIVATE KEY"), "{info}");
    let wrong = scratch.run(
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-in",
            "carol.p12",
            "-passin",
            "pass:wrong",
            "-nodes",
        ],
    );
    assert!(!wrong.status.success());
}

#[test]
fn existing_output_is_refused_without_force_and_nothing_is_written() {
    let scratch = ca();
    scratch.write("dave.key", "precious\n");
    let error = scratch.moat_err(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "dave",
        "--out",
        "dave",
    ]);
    assert!(
        error.contains(
            "dave.key: already exists; pass --force to overwrite it or choose another output"
        ),
        "{error}"
    );
    assert!(!scratch.exists("dave.crt"));
    assert_eq!(scratch.read("dave.key"), "precious\n");
    let ledger: serde_json::Value = serde_json::from_str(&scratch.read("ca/ledger.json")).unwrap();
    assert_eq!(
        ledger["certificates"].as_array().map(Vec::len),
        Some(0),
        "nothing recorded"
    );
    scratch.moat_ok(&[
        "pki",
        "issue",
        "--ca",
        "ca",
        "--profile",
        "client",
        "--cn",
        "dave",
        "--out",
        "dave",
        "--force",
    ]);
    assert!(scratch.read("dave.key").contains("BEGIN PRIVATE KEY"));
    assert_eq!(mode(&scratch.join("dave.key")), 0o600);
}
