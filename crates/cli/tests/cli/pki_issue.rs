//! `moat pki issue`: client and server certificates that openssl, curl and browsers accept.

use crate::common::{Scratch, mode, serial_of, text_of};
use crate::pki_support::{
    assert_lifetime_days, ledger, ledger_count, moat_refuses, public_keys, valid_in_days,
    verify_as, words,
};

fn ca() -> Scratch {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "Issue Test CA"]);
    scratch
}

#[test]
fn client_certificate_passes_openssl_verify_as_sslclient_only() {
    let scratch = ca();
    let stdout = scratch.moat_ok(&words(
        "pki issue --ca ca --profile client --cn alice --org Example --ou Admins --san email:alice@example.com --out alice",
    ));
    assert!(
        stdout.contains("wrote alice.crt, alice.key for O=Example, OU=Admins, CN=alice (serial "),
        "{stdout}"
    );
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslclient", &[], "alice.crt");
    assert!(ok, "{output}");
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslserver", &[], "alice.crt");
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
    assert_lifetime_days(&scratch, "alice.crt", 365);
}

#[test]
fn server_certificate_gets_its_common_name_as_san_and_397_days() {
    let scratch = ca();
    scratch.moat_ok(&words(
        "pki issue --ca ca --profile server --cn app.example.com --out app",
    ));
    let name = ["-verify_hostname", "app.example.com"];
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslserver", &name, "app.crt");
    assert!(ok, "{output}");
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslclient", &[], "app.crt");
    assert!(!ok, "{output}");
    let text = text_of(&scratch, "app.crt");
    assert!(text.contains("DNS:app.example.com"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert_lifetime_days(&scratch, "app.crt", 397);
}

#[test]
fn every_san_kind_and_key_type_is_encoded() {
    let scratch = ca();
    scratch.moat_ok(&words(
        "pki issue --ca ca --profile server --cn svc --key-type rsa-2048 \
         --san dns:svc.internal --san ip:10.1.2.3 --san ip:::1 \
         --san uri:spiffe://example.org/svc --san email:ops@example.org --days 30 --out svc",
    ));
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
    assert!(
        !valid_in_days(&scratch, "svc.crt", 31),
        "--days 30 not applied"
    );
    let ip = ["-verify_ip", "10.1.2.3"];
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslserver", &ip, "svc.crt");
    assert!(ok, "{output}");
}

#[test]
fn serial_is_random_positive_128_bit_and_recorded_in_the_ledger() {
    let scratch = ca();
    scratch.moat_ok(&words("pki issue --ca ca --profile client --cn a --out a"));
    scratch.moat_ok(&words("pki issue --ca ca --profile client --cn b --out b"));
    let a = serial_of(&scratch, "a.crt").to_lowercase();
    let b = serial_of(&scratch, "b.crt").to_lowercase();
    assert_ne!(a, b);
    let a_trimmed = a.trim_start_matches('0');
    assert!(a_trimmed.len() > 24 && a_trimmed.len() <= 32, "{a}");
    let ledger = ledger(&scratch, "ca");
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
    scratch.moat_ok(&words(
        "pki issue --ca ca --profile client --cn bob --out bob --combined",
    ));
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
    let (cert_key, key_pub) = public_keys(&scratch, "bob.pem", "bob.pem");
    assert_eq!(cert_key, key_pub);
}

#[test]
fn p12_bundle_opens_with_openssl_pkcs12_and_the_password_file() {
    let scratch = ca();
    scratch.write("p12pass", "bundle secret\n");
    scratch.moat_ok(&words(
        "pki issue --ca ca --profile client --cn carol --out carol --p12 --p12-password-file p12pass",
    ));
    assert_eq!(mode(&scratch.join("carol.p12")), 0o600);
    let info = scratch.openssl(&words(
        "pkcs12 -info -in carol.p12 -passin file:p12pass -nodes",
    ));
    assert!(info.contains("subject=CN = carol"), "{info}");
    assert!(info.contains("AES-256-CBC"), "{info}");
    assert!(info.contains("BEGIN PRIVATE KEY"), "{info}");
    let wrong = scratch.run(
        "openssl",
        &words("pkcs12 -info -in carol.p12 -passin pass:wrong -nodes"),
    );
    assert!(!wrong.status.success());
}

#[test]
fn existing_output_is_refused_without_force_and_nothing_is_written() {
    let scratch = ca();
    scratch.write("dave.key", "precious\n");
    let issue = words("pki issue --ca ca --profile client --cn dave --out dave");
    moat_refuses(
        &scratch,
        &issue,
        "dave.key: already exists; pass --force to overwrite it or choose another output",
    );
    assert!(!scratch.exists("dave.crt"));
    assert_eq!(scratch.read("dave.key"), "precious\n");
    assert_eq!(ledger_count(&scratch, "ca"), Some(0), "nothing recorded");
    scratch.moat_ok(&[&issue[..], &["--force"]].concat());
    assert!(scratch.read("dave.key").contains("BEGIN PRIVATE KEY"));
    assert_eq!(mode(&scratch.join("dave.key")), 0o600);
}
