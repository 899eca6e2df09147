//! `moat pki sign`: CSRs from `openssl req -new`, signed by moat CAs and by CAs openssl made.

use crate::common;

use common::{Scratch, text_of};

/// The ngrok guide's CA, made with exactly its commands: a passphrase-protected RSA 4096 key
/// (`openssl genrsa -aes256`, which OpenSSL 3 writes as encrypted PKCS#8) and a v3 self-signed
/// certificate.
fn guide_ca(scratch: &Scratch) {
    scratch.write("ca-pass", "guide passphrase\n");
    scratch.openssl(&[
        "genrsa",
        "-aes256",
        "-passout",
        "file:ca-pass",
        "-out",
        "ca.key",
        "4096",
    ]);
    scratch.openssl(&[
        "req",
        "-new",
        "-x509",
        "-sha256",
        "-days",
        "365",
        "-key",
        "ca.key",
        "-passin",
        "file:ca-pass",
        "-out",
        "ca.crt",
        "-subj",
        "/C=US/O=ngrok guide/CN=Guide CA",
    ]);
}

/// The guide's client key and CSR.
fn guide_csr(scratch: &Scratch, name: &str) {
    scratch.openssl(&["genrsa", "-out", &format!("{name}.key"), "2048"]);
    scratch.openssl(&[
        "req",
        "-new",
        "-key",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.csr"),
        "-subj",
        &format!("/C=US/O=Clients/CN={name}"),
    ]);
}

#[test]
fn guide_csr_is_signed_with_the_guides_passphrase_protected_rsa_4096_ca_key() {
    let scratch = Scratch::new();
    guide_ca(&scratch);
    assert!(
        scratch
            .read("ca.key")
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    guide_csr(&scratch, "ngrokclient");
    let stdout = scratch.moat_ok(&[
        "pki",
        "sign",
        "--csr",
        "ngrokclient.csr",
        "--profile",
        "client",
        "--ca-cert",
        "ca.crt",
        "--ca-key",
        "ca.key",
        "--passphrase-file",
        "ca-pass",
        "--out",
        "ngrokclient",
    ]);
    assert!(
        stdout.contains("wrote ngrokclient.crt for C=US, O=Clients, CN=ngrokclient"),
        "{stdout}"
    );
    assert!(!scratch.exists("ngrokclient.key.new"));
    let (ok, output) = scratch.openssl_verify(&[
        "-CAfile",
        "ca.crt",
        "-purpose",
        "sslclient",
        "ngrokclient.crt",
    ]);
    assert!(ok, "{output}");
    let text = text_of(&scratch, "ngrokclient.crt");
    assert!(
        text.contains("Issuer: C = US, O = ngrok guide, CN = Guide CA"),
        "{text}"
    );
    assert!(
        text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    // The certificate carries the requester's key, not a new one.
    let cert_key = scratch.openssl(&["x509", "-in", "ngrokclient.crt", "-noout", "-pubkey"]);
    let own_key = scratch.openssl(&["pkey", "-in", "ngrokclient.key", "-pubout"]);
    assert_eq!(cert_key, own_key);
}

#[test]
fn wrong_passphrase_for_the_guide_ca_key_is_refused_and_nothing_is_written() {
    let scratch = Scratch::new();
    guide_ca(&scratch);
    guide_csr(&scratch, "client");
    scratch.write("wrong-pass", "not it\n");
    let error = scratch.moat_err(&[
        "pki",
        "sign",
        "--csr",
        "client.csr",
        "--profile",
        "client",
        "--ca-cert",
        "ca.crt",
        "--ca-key",
        "ca.key",
        "--passphrase-file",
        "wrong-pass",
        "--out",
        "client",
    ]);
    assert!(error.contains("ca.key: wrong passphrase for the encrypted private key (or the key is corrupted); check the passphrase file or MOAT_CA_PASSPHRASE"), "{error}");
    assert!(!scratch.exists("client.crt"));
}

#[test]
fn server_csr_keeps_its_requested_sans_and_verifies_as_sslserver() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca"]);
    scratch.openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        "web.key",
    ]);
    scratch.openssl(&[
        "req",
        "-new",
        "-key",
        "web.key",
        "-out",
        "web.csr",
        "-subj",
        "/CN=web.example.com",
        "-addext",
        "subjectAltName=DNS:web.example.com,DNS:www.example.com,IP:192.0.2.7",
    ]);
    scratch.moat_ok(&[
        "pki",
        "sign",
        "--csr",
        "web.csr",
        "--profile",
        "server",
        "--ca",
        "ca",
        "--days",
        "90",
        "--out",
        "web",
    ]);
    let (ok, output) = scratch.openssl_verify(&[
        "-CAfile",
        "ca/ca.crt",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "www.example.com",
        "web.crt",
    ]);
    assert!(ok, "{output}");
    let text = text_of(&scratch, "web.crt");
    assert!(
        text.contains("DNS:web.example.com, DNS:www.example.com, IP Address:192.0.2.7"),
        "{text}"
    );
    // Recorded in the CA's ledger like an issued certificate.
    let ledger: serde_json::Value = serde_json::from_str(&scratch.read("ca/ledger.json")).unwrap();
    assert_eq!(ledger["certificates"][0]["subject"], "CN=web.example.com");
    assert_eq!(ledger["certificates"][0]["profile"], "server");
}

#[test]
fn unencrypted_pkcs1_and_sec1_ca_keys_sign() {
    let scratch = Scratch::new();
    guide_csr(&scratch, "client");
    // PKCS#1 RSA key (BEGIN RSA PRIVATE KEY).
    scratch.openssl(&["genrsa", "-traditional", "-out", "rsa-ca.key", "2048"]);
    assert!(
        scratch
            .read("rsa-ca.key")
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    scratch.openssl(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "30",
        "-key",
        "rsa-ca.key",
        "-out",
        "rsa-ca.crt",
        "-subj",
        "/CN=PKCS1 CA",
    ]);
    // SEC1 EC key (BEGIN EC PRIVATE KEY).
    scratch.openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "secp384r1",
        "-noout",
        "-out",
        "ec-ca.key",
    ]);
    assert!(
        scratch
            .read("ec-ca.key")
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    scratch.openssl(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "30",
        "-key",
        "ec-ca.key",
        "-out",
        "ec-ca.crt",
        "-subj",
        "/CN=SEC1 CA",
    ]);
    for ca in ["rsa-ca", "ec-ca"] {
        let out = format!("client-{ca}");
        scratch.moat_ok(&[
            "pki",
            "sign",
            "--csr",
            "client.csr",
            "--profile",
            "client",
            "--ca-cert",
            &format!("{ca}.crt"),
            "--ca-key",
            &format!("{ca}.key"),
            "--out",
            &out,
        ]);
        let (ok, output) = scratch.openssl_verify(&[
            "-CAfile",
            &format!("{ca}.crt"),
            "-purpose",
            "sslclient",
            &format!("{out}.crt"),
        ]);
        assert!(ok, "{ca}: {output}");
    }
}

#[test]
fn legacy_encrypted_pem_key_is_refused_with_the_conversion_command() {
    let scratch = Scratch::new();
    guide_csr(&scratch, "client");
    scratch.write("pass", "legacy\n");
    scratch.openssl(&["genrsa", "-out", "plain.key", "2048"]);
    scratch.openssl(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "30",
        "-key",
        "plain.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=Legacy CA",
    ]);
    scratch.openssl(&[
        "rsa",
        "-in",
        "plain.key",
        "-aes256",
        "-traditional",
        "-passout",
        "file:pass",
        "-out",
        "legacy.key",
    ]);
    assert!(
        scratch
            .read("legacy.key")
            .contains("Proc-Type: 4,ENCRYPTED")
    );
    let error = scratch.moat_err(&[
        "pki",
        "sign",
        "--csr",
        "client.csr",
        "--profile",
        "client",
        "--ca-cert",
        "ca.crt",
        "--ca-key",
        "legacy.key",
        "--passphrase-file",
        "pass",
        "--out",
        "client",
    ]);
    assert!(error.contains("legacy.key: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in legacy.key -out legacy.key.pk8`"), "{error}");
    assert!(!scratch.exists("client.crt"));
    // The suggested command works, and the converted key signs. (openssl reads one line per
    // use of a file, so the new passphrase comes from a copy.)
    scratch.write("pass-again", "legacy\n");
    scratch.openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "legacy.key",
        "-passin",
        "file:pass",
        "-passout",
        "file:pass-again",
        "-out",
        "legacy.key.pk8",
    ]);
    scratch.moat_ok(&[
        "pki",
        "sign",
        "--csr",
        "client.csr",
        "--profile",
        "client",
        "--ca-cert",
        "ca.crt",
        "--ca-key",
        "legacy.key.pk8",
        "--passphrase-file",
        "pass",
        "--out",
        "client",
    ]);
}
