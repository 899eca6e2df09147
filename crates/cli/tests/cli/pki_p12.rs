//! `moat pki p12`: bundles that OpenSSL 3 opens, with the same certificate and key that went in.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Runs openssl in `dir`, fails the test when it fails, returns stdout + stderr.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, "openssl", args);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn moat(dir: &Path, args: &[&str]) -> Output {
    run(dir, env!("CARGO_BIN_EXE_moat"), args)
}

fn moat_ok(dir: &Path, args: &[&str]) {
    let output = moat(dir, args);
    assert!(
        output.status.success(),
        "moat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, an intermediate and a client certificate made with openssl, plus a password file.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(
        path.join("ext.cnf"),
        "[ ca ]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         [ client ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    openssl(path, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(
        path,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=P12 Root",
        ],
    );
    openssl(path, &["genrsa", "-out", "int.key", "2048"]);
    openssl(
        path,
        &[
            "req",
            "-new",
            "-key",
            "int.key",
            "-out",
            "int.csr",
            "-subj",
            "/CN=P12 Intermediate",
        ],
    );
    openssl(
        path,
        &[
            "x509",
            "-req",
            "-days",
            "30",
            "-in",
            "int.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "ca",
            "-out",
            "int.crt",
        ],
    );
    openssl(path, &["genrsa", "-out", "client.key", "2048"]);
    openssl(
        path,
        &[
            "req",
            "-new",
            "-key",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=p12 client",
        ],
    );
    openssl(
        path,
        &[
            "x509",
            "-req",
            "-days",
            "30",
            "-in",
            "client.csr",
            "-CA",
            "int.crt",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "client",
            "-out",
            "client.crt",
        ],
    );
    std::fs::write(path.join("pw.txt"), "correct horse\n").unwrap();
    dir
}

fn fingerprint(dir: &Path, cert: &str) -> String {
    openssl(
        dir,
        &["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
    )
}

/// The public key of a certificate, as PEM.
fn cert_public_key(dir: &Path, cert: &str) -> String {
    openssl(dir, &["x509", "-in", cert, "-noout", "-pubkey"])
}

/// Extracts the leaf, the CA certificates and the key from a bundle with `openssl pkcs12`, and
/// checks they are the inputs.
fn assert_bundle_holds(dir: &Path, bundle: &str, leaf: &str, chain: &[&str]) {
    openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            bundle,
            "-passin",
            "file:pw.txt",
            "-clcerts",
            "-nokeys",
            "-out",
            "out-leaf.pem",
        ],
    );
    assert_eq!(fingerprint(dir, "out-leaf.pem"), fingerprint(dir, leaf));

    openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            bundle,
            "-passin",
            "file:pw.txt",
            "-cacerts",
            "-nokeys",
            "-out",
            "out-chain.pem",
        ],
    );
    let extracted = std::fs::read_to_string(dir.join("out-chain.pem")).unwrap();
    assert_eq!(
        extracted.matches("-----BEGIN CERTIFICATE-----").count(),
        chain.len(),
        "chain certificates in the bundle: {extracted}"
    );
    for cert in chain {
        let subject = openssl(dir, &["x509", "-in", cert, "-noout", "-subject"]);
        assert!(
            extracted.contains(subject.trim()),
            "{cert} missing from the bundle"
        );
    }

    openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            bundle,
            "-passin",
            "file:pw.txt",
            "-nocerts",
            "-nodes",
            "-out",
            "out-key.pem",
        ],
    );
    let key_public = openssl(dir, &["pkey", "-in", "out-key.pem", "-pubout"]);
    assert_eq!(
        key_public,
        cert_public_key(dir, leaf),
        "bundled key does not match"
    );
}

#[test]
fn default_bundle_opens_with_openssl_using_aes256_and_sha256() {
    let dir = fixtures();
    let path = dir.path();
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--chain",
            "int.crt",
            "--out",
            "client.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    let info = openssl(
        path,
        &[
            "pkcs12",
            "-info",
            "-in",
            "client.p12",
            "-passin",
            "file:pw.txt",
            "-noout",
        ],
    );
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
    assert!(!info.contains("TripleDES"), "{info}");
    assert_bundle_holds(path, "client.p12", "client.crt", &["int.crt"]);
}

#[test]
fn legacy_bundle_opens_with_openssl3_using_3des_and_sha1() {
    let dir = fixtures();
    let path = dir.path();
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--chain",
            "int.crt",
            "--out",
            "legacy.p12",
            "--password-file",
            "pw.txt",
            "--legacy",
        ],
    );
    // No `-legacy` flag: OpenSSL 3's default provider must open it.
    let info = openssl(
        path,
        &[
            "pkcs12",
            "-info",
            "-in",
            "legacy.p12",
            "-passin",
            "file:pw.txt",
            "-noout",
        ],
    );
    assert!(info.contains("MAC: sha1"), "{info}");
    assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
    assert!(!info.contains("AES-256"), "{info}");
    assert_bundle_holds(path, "legacy.p12", "client.crt", &["int.crt"]);
}

#[test]
fn certificates_after_the_leaf_in_the_cert_file_become_the_chain() {
    let dir = fixtures();
    let path = dir.path();
    let combined = ["client.crt", "int.crt"]
        .iter()
        .map(|file| std::fs::read_to_string(path.join(file)).unwrap())
        .collect::<String>();
    std::fs::write(path.join("client-chain.crt"), combined).unwrap();
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client-chain.crt",
            "--key",
            "client.key",
            "--chain",
            "ca.crt",
            "--out",
            "full.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    assert_bundle_holds(path, "full.p12", "client.crt", &["int.crt", "ca.crt"]);
}

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_are_bundled_as_the_same_key() {
    let dir = fixtures();
    let path = dir.path();
    openssl(
        path,
        &[
            "rsa",
            "-in",
            "client.key",
            "-traditional",
            "-out",
            "client-pkcs1.key",
        ],
    );
    assert!(
        std::fs::read_to_string(path.join("client-pkcs1.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client-pkcs1.key",
            "--out",
            "rsa.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    assert_bundle_holds(path, "rsa.p12", "client.crt", &[]);

    openssl(
        path,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    assert!(
        std::fs::read_to_string(path.join("ec.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    openssl(
        path,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-key",
            "ec.key",
            "-out",
            "ec.crt",
            "-subj",
            "/CN=ec device",
        ],
    );
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "ec.crt",
            "--key",
            "ec.key",
            "--out",
            "ec.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    assert_bundle_holds(path, "ec.p12", "ec.crt", &[]);
}

#[test]
fn key_of_another_certificate_is_refused_naming_both_files() {
    let dir = fixtures();
    let path = dir.path();
    let output = moat(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "int.key",
            "--out",
            "wrong.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "int.key: this private key does not match the certificate in client.crt (CN=p12 client)"
        ),
        "{stderr}"
    );
    assert!(
        !path.join("wrong.p12").exists(),
        "nothing is written on error"
    );
}

#[test]
fn bundle_is_private_and_an_existing_output_needs_force() {
    let dir = fixtures();
    let path = dir.path();
    let args = [
        "pki",
        "p12",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
        "--out",
        "client.p12",
        "--password-file",
        "pw.txt",
    ];
    moat_ok(path, &args);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path.join("client.p12"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "bundle mode {mode:o}");
    }
    let first = std::fs::read(path.join("client.p12")).unwrap();

    let refused = moat(path, &args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("client.p12: already exists; pass --force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(path.join("client.p12")).unwrap(),
        first,
        "left untouched"
    );

    moat_ok(path, &[&args[..], &["--force"]].concat());
    assert_ne!(
        std::fs::read(path.join("client.p12")).unwrap(),
        first,
        "replaced with --force"
    );
    assert_bundle_holds(path, "client.p12", "client.crt", &[]);
}

#[test]
fn wrong_password_does_not_open_the_bundle() {
    let dir = fixtures();
    let path = dir.path();
    moat_ok(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--out",
            "client.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    let output = run(
        path,
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-in",
            "client.p12",
            "-passin",
            "pass:wrong",
            "-noout",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Mac verify error"), "{stderr}");
}

#[test]
fn encrypted_key_is_bundled_with_its_passphrase_file_and_refused_without() {
    let dir = fixtures();
    let path = dir.path();
    openssl(
        path,
        &[
            "pkey",
            "-in",
            "client.key",
            "-aes256",
            "-passout",
            "pass:key secret",
            "-out",
            "client-enc.key",
        ],
    );
    std::fs::write(path.join("keypass.txt"), "key secret\n").unwrap();
    std::fs::write(path.join("badpass.txt"), "not it\n").unwrap();
    let base = [
        "pki",
        "p12",
        "--cert",
        "client.crt",
        "--key",
        "client-enc.key",
        "--out",
        "enc.p12",
        "--password-file",
        "pw.txt",
    ];

    let output = moat(path, &base);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client-enc.key: the private key is encrypted; pass its passphrase with --key-passphrase-file"),
        "{stderr}"
    );

    let output = moat(
        path,
        &[&base[..], &["--key-passphrase-file", "badpass.txt"]].concat(),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client-enc.key: wrong passphrase"),
        "{stderr}"
    );
    assert!(
        !path.join("enc.p12").exists(),
        "nothing is written on error"
    );

    moat_ok(
        path,
        &[&base[..], &["--key-passphrase-file", "keypass.txt"]].concat(),
    );
    assert_bundle_holds(path, "enc.p12", "client.crt", &[]);
}

#[test]
fn legacy_encrypted_pem_key_and_empty_password_file_are_refused_with_the_fix() {
    let dir = fixtures();
    let path = dir.path();
    openssl(
        path,
        &[
            "rsa",
            "-in",
            "client.key",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            "client-legacy.key",
        ],
    );
    let output = moat(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client-legacy.key",
            "--out",
            "a.p12",
            "--password-file",
            "pw.txt",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client-legacy.key: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it with `openssl pkcs8 -topk8"),
        "{stderr}"
    );

    std::fs::write(path.join("empty.txt"), "").unwrap();
    let output = moat(
        path,
        &[
            "pki",
            "p12",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--out",
            "b.p12",
            "--password-file",
            "empty.txt",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("empty.txt: the file is empty; put the bundle's password on its first line"),
        "{stderr}"
    );
    assert!(!path.join("a.p12").exists() && !path.join("b.p12").exists());
}
