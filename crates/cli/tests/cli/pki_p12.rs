//! `moat pki p12`: bundles that OpenSSL 3 opens, with the same certificate and key that went in.

use crate::common::{Scratch, mode};
use crate::pki_support::{
    csr, ec_key, moat_refuses, openssl_sign, public_keys, self_signed, with, words,
};

/// `moat pki p12` of `cert` and `key` into `out` with the password in `pw.txt`.
fn p12_line(cert: &str, key: &str, out: &str) -> String {
    format!("pki p12 --cert {cert} --key {key} --out {out} --password-file pw.txt")
}

/// A CA, an intermediate and a client certificate made with openssl, plus a password file.
fn fixtures() -> Scratch {
    let scratch = Scratch::new();
    scratch.write(
        "ext.cnf",
        "[ ca ]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         [ client ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
    );
    let signed = |csr_file: &str, ca: &str, section: &str, out: &str| {
        let extra = format!("-days 30 -CAcreateserial -extfile ext.cnf -extensions {section}");
        openssl_sign(
            &scratch,
            csr_file,
            &format!("{ca}.crt"),
            &format!("{ca}.key"),
            out,
            &words(&extra),
        );
    };
    scratch.openssl(&["genrsa", "-out", "ca.key", "2048"]);
    self_signed(&scratch, "ca.key", "ca.crt", "/CN=P12 Root", "30", &[]);
    scratch.openssl(&["genrsa", "-out", "int.key", "2048"]);
    csr(&scratch, "int.key", "int.csr", "/CN=P12 Intermediate", &[]);
    signed("int.csr", "ca", "ca", "int.crt");
    scratch.openssl(&["genrsa", "-out", "client.key", "2048"]);
    csr(&scratch, "client.key", "client.csr", "/CN=p12 client", &[]);
    signed("client.csr", "int", "client", "client.crt");
    scratch.write("pw.txt", "correct horse\n");
    scratch
}

fn fingerprint(scratch: &Scratch, cert: &str) -> String {
    scratch.openssl(&["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"])
}

/// `openssl pkcs12 -in BUNDLE -passin PASSIN ARGS`: its output when it succeeds.
fn pkcs12(scratch: &Scratch, bundle: &str, passin: &str, args: &str) -> std::process::Output {
    let base = ["pkcs12", "-in", bundle, "-passin", passin];
    scratch.run("openssl", &with(&base, &words(args)))
}

/// Like [`pkcs12`] with the password file; the test fails unless openssl succeeds.
fn pkcs12_ok(scratch: &Scratch, bundle: &str, args: &str) -> String {
    scratch.openssl(&with(
        &["pkcs12", "-in", bundle, "-passin", "file:pw.txt"],
        &words(args),
    ))
}

/// Extracts the leaf, the CA certificates and the key from a bundle with `openssl pkcs12`, and
/// checks they are the inputs.
fn assert_bundle_holds(scratch: &Scratch, bundle: &str, leaf: &str, chain: &[&str]) {
    pkcs12_ok(scratch, bundle, "-clcerts -nokeys -out out-leaf.pem");
    assert_eq!(
        fingerprint(scratch, "out-leaf.pem"),
        fingerprint(scratch, leaf)
    );

    pkcs12_ok(scratch, bundle, "-cacerts -nokeys -out out-chain.pem");
    let extracted = scratch.read("out-chain.pem");
    assert_eq!(
        extracted.matches("-----BEGIN CERTIFICATE-----").count(),
        chain.len(),
        "chain certificates in the bundle: {extracted}"
    );
    for cert in chain {
        let subject = scratch.openssl(&["x509", "-in", cert, "-noout", "-subject"]);
        assert!(
            extracted.contains(subject.trim()),
            "{cert} missing from the bundle"
        );
    }

    pkcs12_ok(scratch, bundle, "-nocerts -nodes -out out-key.pem");
    let (cert_public, key_public) = public_keys(scratch, leaf, "out-key.pem");
    assert_eq!(key_public, cert_public, "bundled key does not match");
}

/// Bundles client.crt, client.key and int.crt into `out` (plus `extra` flags), and returns
/// `openssl pkcs12 -info` of it.
fn bundle_info(scratch: &Scratch, out: &str, extra: &[&str]) -> String {
    let line = p12_line("client.crt", "client.key", out) + " --chain int.crt";
    scratch.moat_ok(&with(&words(&line), extra));
    // No `-legacy` flag: OpenSSL 3's default provider must open every bundle.
    pkcs12_ok(scratch, out, "-info -noout")
}

/// [`bundle_info`] of `out` names the `mac` and the `cipher` and not the `other` cipher, and the
/// bundle holds client.crt with int.crt as its chain.
fn assert_bundle_made_with(out: &str, extra: &[&str], mac: &str, cipher: &str, other: &str) {
    let scratch = fixtures();
    let info = bundle_info(&scratch, out, extra);
    assert!(info.contains(mac), "{info}");
    assert!(info.contains(cipher), "{info}");
    assert!(!info.contains(other), "{info}");
    assert_bundle_holds(&scratch, out, "client.crt", &["int.crt"]);
}

#[test]
fn default_bundle_opens_with_openssl_using_aes256_and_sha256() {
    let (mac, cipher) = ("MAC: sha256", "PBES2, PBKDF2, AES-256-CBC");
    assert_bundle_made_with("client.p12", &[], mac, cipher, "TripleDES");
}

#[test]
fn legacy_bundle_opens_with_openssl3_using_3des_and_sha1() {
    let (mac, cipher) = ("MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC");
    assert_bundle_made_with("legacy.p12", &["--legacy"], mac, cipher, "AES-256");
}

#[test]
fn certificates_after_the_leaf_in_the_cert_file_become_the_chain() {
    let scratch = fixtures();
    let combined = format!("{}{}", scratch.read("client.crt"), scratch.read("int.crt"));
    scratch.write("client-chain.crt", combined);
    let line = p12_line("client-chain.crt", "client.key", "full.p12") + " --chain ca.crt";
    scratch.moat_ok(&words(&line));
    assert_bundle_holds(&scratch, "full.p12", "client.crt", &["int.crt", "ca.crt"]);
}

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_are_bundled_as_the_same_key() {
    let scratch = fixtures();
    scratch.openssl(&words(
        "rsa -in client.key -traditional -out client-pkcs1.key",
    ));
    assert!(
        scratch
            .read("client-pkcs1.key")
            .contains("BEGIN RSA PRIVATE KEY")
    );
    scratch.moat_ok(&words(&p12_line(
        "client.crt",
        "client-pkcs1.key",
        "rsa.p12",
    )));
    assert_bundle_holds(&scratch, "rsa.p12", "client.crt", &[]);

    ec_key(&scratch, "ec.key");
    assert!(scratch.read("ec.key").contains("BEGIN EC PRIVATE KEY"));
    self_signed(&scratch, "ec.key", "ec.crt", "/CN=ec device", "30", &[]);
    scratch.moat_ok(&words(&p12_line("ec.crt", "ec.key", "ec.p12")));
    assert_bundle_holds(&scratch, "ec.p12", "ec.crt", &[]);
}

#[test]
fn key_of_another_certificate_is_refused_naming_both_files() {
    let scratch = fixtures();
    moat_refuses(
        &scratch,
        &words(&p12_line("client.crt", "int.key", "wrong.p12")),
        "int.key: this private key does not match the certificate in client.crt (CN=p12 client)",
    );
    assert!(!scratch.exists("wrong.p12"), "nothing is written on error");
}

#[test]
fn bundle_is_private_and_an_existing_output_needs_force() {
    let scratch = fixtures();
    let line = p12_line("client.crt", "client.key", "client.p12");
    let args = words(&line);
    scratch.moat_ok(&args);
    let bundle_mode = mode(&scratch.join("client.p12"));
    assert_eq!(bundle_mode, 0o600, "bundle mode {bundle_mode:o}");
    let first = std::fs::read(scratch.join("client.p12")).unwrap();

    moat_refuses(&scratch, &args, "client.p12: already exists; pass --force");
    assert_eq!(
        std::fs::read(scratch.join("client.p12")).unwrap(),
        first,
        "left untouched"
    );

    scratch.moat_ok(&with(&args, &["--force"]));
    assert_ne!(
        std::fs::read(scratch.join("client.p12")).unwrap(),
        first,
        "replaced with --force"
    );
    assert_bundle_holds(&scratch, "client.p12", "client.crt", &[]);
}

#[test]
fn wrong_password_does_not_open_the_bundle() {
    let scratch = fixtures();
    scratch.moat_ok(&words(&p12_line("client.crt", "client.key", "client.p12")));
    let output = pkcs12(&scratch, "client.p12", "pass:wrong", "-info -noout");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Mac verify error"), "{stderr}");
}

#[test]
fn encrypted_key_is_bundled_with_its_passphrase_file_and_refused_without() {
    let scratch = fixtures();
    scratch.openssl(&[
        "pkey",
        "-in",
        "client.key",
        "-aes256",
        "-passout",
        "pass:key secret",
        "-out",
        "client-enc.key",
    ]);
    scratch.write("keypass.txt", "key secret\n");
    scratch.write("badpass.txt", "not it\n");
    let line = p12_line("client.crt", "client-enc.key", "enc.p12");
    let base = words(&line);

    moat_refuses(
        &scratch,
        &base,
        "client-enc.key: the private key is encrypted; pass its passphrase with --key-passphrase-file",
    );
    moat_refuses(
        &scratch,
        &with(&base, &["--key-passphrase-file", "badpass.txt"]),
        "client-enc.key: wrong passphrase",
    );
    assert!(!scratch.exists("enc.p12"), "nothing is written on error");

    scratch.moat_ok(&with(&base, &["--key-passphrase-file", "keypass.txt"]));
    assert_bundle_holds(&scratch, "enc.p12", "client.crt", &[]);
}

#[test]
fn legacy_encrypted_pem_key_and_empty_password_file_are_refused_with_the_fix() {
    let scratch = fixtures();
    scratch.openssl(&words(
        "rsa -in client.key -traditional -aes256 -passout pass:x -out client-legacy.key",
    ));
    moat_refuses(
        &scratch,
        &words(&p12_line("client.crt", "client-legacy.key", "a.p12")),
        "client-legacy.key: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it with `openssl pkcs8 -topk8",
    );

    scratch.write("empty.txt", "");
    let line = "pki p12 --cert client.crt --key client.key --out b.p12 --password-file empty.txt";
    moat_refuses(
        &scratch,
        &words(line),
        "empty.txt: the file is empty; put the bundle's password on its first line",
    );
    assert!(!scratch.exists("a.p12") && !scratch.exists("b.p12"));
}
