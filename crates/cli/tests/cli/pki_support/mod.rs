//! Shared kit for the `moat pki` tests: the openssl steps that make keys, CSRs and certificates,
//! and the checks the tests make of what moat wrote (validity, purpose, ledger, refusals).
#![allow(dead_code)] // Each pki module uses a different subset.

use crate::common::Scratch;
pub use crate::common::words;

/// `ARGS` followed by `MORE` (for an argument list with one or two extra flags).
pub fn with<'a>(args: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [args, more].concat()
}

/// An RSA 2048 key in PKCS#8 (`openssl genrsa`).
pub fn rsa_key(scratch: &Scratch, out: &str) {
    scratch.openssl(&["genrsa", "-out", out, "2048"]);
}

/// A P-256 key in SEC1 (`openssl ecparam -genkey`).
pub fn ec_key(scratch: &Scratch, out: &str) {
    scratch.openssl(&words(&format!(
        "ecparam -genkey -name prime256v1 -noout -out {out}"
    )));
}

/// A CSR for `key` with `subject` (`openssl req -new`), plus any `extra` arguments.
pub fn csr(scratch: &Scratch, key: &str, out: &str, subject: &str, extra: &[&str]) {
    let base = ["req", "-new", "-key", key, "-out", out, "-subj", subject];
    scratch.openssl(&with(&base, extra));
}

/// A self-signed certificate for `key` valid `days` days (`openssl req -new -x509`), plus any
/// `extra` arguments.
pub fn self_signed(
    scratch: &Scratch,
    key: &str,
    out: &str,
    subject: &str,
    days: &str,
    extra: &[&str],
) {
    let base = [
        "req", "-new", "-x509", "-days", days, "-key", key, "-out", out, "-subj", subject,
    ];
    scratch.openssl(&with(&base, extra));
}

/// `csr` signed by `ca_cert`/`ca_key` with `openssl x509 -req`, plus any `extra` arguments.
pub fn openssl_sign(
    scratch: &Scratch,
    csr: &str,
    ca_cert: &str,
    ca_key: &str,
    out: &str,
    extra: &[&str],
) {
    let base = [
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-out", out,
    ];
    scratch.openssl(&with(&base, extra));
}

/// Whether `cert` is still valid `days` days from now (`openssl x509 -checkend`).
pub fn valid_in_days(scratch: &Scratch, cert: &str, days: u64) -> bool {
    let seconds = (days * 86400).to_string();
    let args = ["x509", "-in", cert, "-noout", "-checkend", &seconds];
    scratch.run("openssl", &args).status.success()
}

/// Asserts that `cert` is valid for `days` days from now: still valid a day before, expired a day
/// after.
pub fn assert_lifetime_days(scratch: &Scratch, cert: &str, days: u64) {
    assert!(
        valid_in_days(scratch, cert, days - 1),
        "{cert}: expires before {days} days"
    );
    assert!(
        !valid_in_days(scratch, cert, days + 1),
        "{cert}: valid beyond {days} days"
    );
}

/// `openssl verify -CAfile CA -purpose PURPOSE [EXTRA] CERT`: (success, output).
pub fn verify_as(
    scratch: &Scratch,
    ca: &str,
    purpose: &str,
    extra: &[&str],
    cert: &str,
) -> (bool, String) {
    let base = ["-CAfile", ca, "-purpose", purpose];
    scratch.openssl_verify(&[&base[..], extra, &[cert]].concat())
}

/// The public key of a certificate and of a private key, as PEM (to show they are one key).
pub fn public_keys(scratch: &Scratch, cert: &str, key: &str) -> (String, String) {
    (
        scratch.openssl(&["x509", "-in", cert, "-noout", "-pubkey"]),
        scratch.openssl(&["pkey", "-in", key, "-pubout"]),
    )
}

/// A CA's `ledger.json`, parsed.
pub fn ledger(scratch: &Scratch, ca: &str) -> serde_json::Value {
    serde_json::from_str(&scratch.read(&format!("{ca}/ledger.json"))).expect("ledger.json is JSON")
}

/// How many certificates a CA's ledger records.
pub fn ledger_count(scratch: &Scratch, ca: &str) -> Option<usize> {
    ledger(scratch, ca)["certificates"].as_array().map(Vec::len)
}

/// Runs moat, fails the test unless it fails with `expected` in its stderr; returns stderr.
pub fn moat_refuses(scratch: &Scratch, args: &[&str], expected: &str) -> String {
    let error = scratch.moat_err(args);
    assert!(
        error.contains(expected),
        "moat {args:?}: expected {expected:?} in {error}"
    );
    error
}
