//! Bad input to `moat pki`: one clear line naming the file and the fix, a failure exit, nothing written.

use crate::common::Scratch;
use crate::pki_support::{csr, ec_key, ledger_count, moat_refuses, openssl_sign, with, words};

fn ca() -> Scratch {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "Errors CA"]);
    ec_key(&scratch, "req.key");
    csr(&scratch, "req.key", "req.csr", "/CN=requester", &[]);
    scratch
}

/// Runs moat, which must fail, and asserts [`assert_refused`] of its error against the files
/// the directory held before the run.
fn refused(scratch: &Scratch, args: &[&str], expected: &str) {
    let before = scratch.listing();
    let error = scratch.moat_err(args);
    assert_refused(scratch, &error, expected, &before);
}

/// Asserts a single-line error and that the scratch directory holds exactly `files`.
fn assert_refused(scratch: &Scratch, error: &str, expected: &str, before: &[String]) {
    assert!(
        error.contains(expected),
        "expected {expected:?} in {error:?}"
    );
    assert_eq!(error.trim_end().lines().count(), 1, "one line: {error}");
    assert_eq!(&scratch.listing(), before, "nothing may be written");
}

#[test]
fn wrong_passphrase_for_a_moat_ca_names_the_key_file() {
    let scratch = Scratch::new();
    scratch.write("good", "right\n");
    scratch.write("bad", "wrong\n");
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--passphrase-file", "good"]);
    let ledger = scratch.read("ca/ledger.json");
    refused(
        &scratch,
        &words("pki issue --ca ca --passphrase-file bad --profile client --cn x --out x"),
        "ca/ca.key: wrong passphrase for the encrypted private key (or the key is corrupted); check the passphrase file or MOAT_CA_PASSPHRASE",
    );
    assert_eq!(scratch.read("ca/ledger.json"), ledger);
}

/// `moat pki sign` of `csr` with the client profile and the CA flags `ca`, into `signed`.
fn sign_line(csr: &str, ca: &str) -> String {
    format!("pki sign --csr {csr} --profile client {ca} --out signed")
}

#[test]
fn key_that_does_not_match_the_ca_certificate_is_refused() {
    let scratch = ca();
    scratch.moat_ok(&["pki", "init-ca", "--out", "other"]);
    refused(
        &scratch,
        &words(&sign_line(
            "req.csr",
            "--ca-cert ca/ca.crt --ca-key other/ca.key",
        )),
        "other/ca.key: this private key does not match the certificate ca/ca.crt (CN=Errors CA); pass the key that was generated with that certificate",
    );
}

#[test]
fn csr_with_a_bad_signature_is_refused_before_signing() {
    let scratch = ca();
    // Flip one bit in the last byte of the DER (inside the signature).
    scratch.openssl(&words("req -in req.csr -outform DER -out req.der"));
    let mut der = std::fs::read(scratch.join("req.der")).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    scratch.write("tampered.der", der);
    std::fs::remove_file(scratch.join("req.der")).unwrap();
    refused(
        &scratch,
        &words(&sign_line("tampered.der", "--ca ca")),
        "tampered.der: the CSR's signature does not verify (the request was altered or corrupted); ask the requester for a fresh CSR from `openssl req -new`",
    );
    assert_eq!(ledger_count(&scratch, "ca"), Some(0));
}

#[test]
fn file_that_is_not_a_csr_is_refused() {
    let scratch = ca();
    refused(
        &scratch,
        &words(&sign_line("ca/ca.crt", "--ca ca")),
        "ca/ca.crt: not a certificate signing request (no CERTIFICATE REQUEST section)",
    );
}

#[test]
fn unknown_built_in_profile_is_refused_with_the_choices() {
    let scratch = ca();
    refused(
        &scratch,
        &words("pki issue --ca ca --profile admin --cn x --out x"),
        "unknown profile \"admin\"; use one of: client, server (or pass --config ca-config.json for cfssl profiles)",
    );
}

#[test]
fn unparsable_expiry_in_a_ca_csr_json_is_refused() {
    let scratch = Scratch::new();
    scratch.write(
        "ca-csr.json",
        r#"{"CN": "X", "ca": {"expiry": "ten years"}}"#,
    );
    refused(
        &scratch,
        &["pki", "init-ca", "--csr-json", "ca-csr.json", "--out", "ca"],
        "ca-csr.json \"ca\".\"expiry\": expiry \"ten years\" does not start with a number; write hours like \"8760h\" (cfssl) or pass --days N",
    );
}

#[test]
fn ca_that_is_not_a_ca_is_refused() {
    let scratch = ca();
    scratch.moat_ok(&words(
        "pki issue --ca ca --profile client --cn leaf --out leaf",
    ));
    refused(
        &scratch,
        &words(&sign_line(
            "req.csr",
            "--ca-cert leaf.crt --ca-key leaf.key",
        )),
        "leaf.crt: CN=leaf is not a CA (basicConstraints cA=false); pass a CA certificate",
    );
    // The guide's v1 client certificate (no extensions) cannot issue either.
    openssl_sign(
        &scratch,
        "req.csr",
        "ca/ca.crt",
        "ca/ca.key",
        "v1.crt",
        &["-set_serial", "7"],
    );
    refused(
        &scratch,
        &words(&sign_line("req.csr", "--ca-cert v1.crt --ca-key req.key")),
        "v1.crt: CN=requester is not a CA (no basicConstraints extension; an X.509 v1 or leaf certificate cannot issue (RFC 5280 4.2.1.9))",
    );
    // A directory without a CA.
    refused(
        &scratch,
        &words("pki issue --ca . --profile client --cn x --out x"),
        "not a moat CA directory (missing ca.crt); make one with `moat pki init-ca --out DIR` or pass --ca-cert and --ca-key",
    );
}

#[test]
fn bad_san_and_server_without_a_usable_name_are_refused() {
    let scratch = ca();
    let server = words("pki issue --ca ca --profile server --out x");
    moat_refuses(
        &scratch,
        &with(&server, &["--cn", "x", "--san", "host:foo"]),
        "subject alternative name \"host:foo\": unknown kind prefix; write dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS",
    );
    refused(
        &scratch,
        &with(&server, &["--cn", "My Server"]),
        "the common name \"My Server\" is not a DNS name or IP address, so it cannot be the server certificate's SAN; pass --san dns:NAME",
    );
}
