//! `moat pki sign`: CSRs from `openssl req -new`, signed by moat CAs and by CAs openssl made.

use crate::common::{Scratch, text_of};
use crate::pki_support::{
    csr, ec_key, ledger, moat_refuses, public_keys, self_signed, verify_as, with, words,
};

/// The ngrok guide's CA, made with exactly its commands: a passphrase-protected RSA 4096 key
/// (`openssl genrsa -aes256`, which OpenSSL 3 writes as encrypted PKCS#8) and a v3 self-signed
/// certificate.
fn guide_ca(scratch: &Scratch) {
    scratch.write("ca-pass", "guide passphrase\n");
    scratch.openssl(&words(
        "genrsa -aes256 -passout file:ca-pass -out ca.key 4096",
    ));
    let extra = ["-sha256", "-passin", "file:ca-pass"];
    self_signed(
        scratch,
        "ca.key",
        "ca.crt",
        "/C=US/O=ngrok guide/CN=Guide CA",
        "365",
        &extra,
    );
}

/// The guide's client key and CSR.
fn guide_csr(scratch: &Scratch, name: &str) {
    scratch.openssl(&["genrsa", "-out", &format!("{name}.key"), "2048"]);
    let subject = format!("/C=US/O=Clients/CN={name}");
    csr(
        scratch,
        &format!("{name}.key"),
        &format!("{name}.csr"),
        &subject,
        &[],
    );
}

/// `moat pki sign` of `csr` with the client profile by `ca_cert` and `ca_key`, into `out`.
fn sign_line(csr: &str, ca_cert: &str, ca_key: &str, out: &str) -> String {
    format!(
        "pki sign --csr {csr} --profile client --ca-cert {ca_cert} --ca-key {ca_key} --out {out}"
    )
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
    let line = sign_line("ngrokclient.csr", "ca.crt", "ca.key", "ngrokclient");
    let stdout = scratch.moat_ok(&with(&words(&line), &["--passphrase-file", "ca-pass"]));
    assert!(
        stdout.contains("wrote ngrokclient.crt for C=US, O=Clients, CN=ngrokclient"),
        "{stdout}"
    );
    assert!(!scratch.exists("ngrokclient.key.new"));
    let (ok, output) = verify_as(&scratch, "ca.crt", "sslclient", &[], "ngrokclient.crt");
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
    let (cert_key, own_key) = public_keys(&scratch, "ngrokclient.crt", "ngrokclient.key");
    assert_eq!(cert_key, own_key);
}

#[test]
fn wrong_passphrase_for_the_guide_ca_key_is_refused_and_nothing_is_written() {
    let scratch = Scratch::new();
    guide_ca(&scratch);
    guide_csr(&scratch, "client");
    scratch.write("wrong-pass", "not it\n");
    let line = sign_line("client.csr", "ca.crt", "ca.key", "client");
    moat_refuses(
        &scratch,
        &with(&words(&line), &["--passphrase-file", "wrong-pass"]),
        "ca.key: wrong passphrase for the encrypted private key (or the key is corrupted); check the passphrase file or MOAT_CA_PASSPHRASE",
    );
    assert!(!scratch.exists("client.crt"));
}

#[test]
fn server_csr_keeps_its_requested_sans_and_verifies_as_sslserver() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca"]);
    ec_key(&scratch, "web.key");
    let sans = "subjectAltName=DNS:web.example.com,DNS:www.example.com,IP:192.0.2.7";
    csr(
        &scratch,
        "web.key",
        "web.csr",
        "/CN=web.example.com",
        &["-addext", sans],
    );
    scratch.moat_ok(&words(
        "pki sign --csr web.csr --profile server --ca ca --days 90 --out web",
    ));
    let name = ["-verify_hostname", "www.example.com"];
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslserver", &name, "web.crt");
    assert!(ok, "{output}");
    let text = text_of(&scratch, "web.crt");
    assert!(
        text.contains("DNS:web.example.com, DNS:www.example.com, IP Address:192.0.2.7"),
        "{text}"
    );
    // Recorded in the CA's ledger like an issued certificate.
    let ledger = ledger(&scratch, "ca");
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
    self_signed(
        &scratch,
        "rsa-ca.key",
        "rsa-ca.crt",
        "/CN=PKCS1 CA",
        "30",
        &[],
    );
    // SEC1 EC key (BEGIN EC PRIVATE KEY).
    scratch.openssl(&words(
        "ecparam -genkey -name secp384r1 -noout -out ec-ca.key",
    ));
    assert!(
        scratch
            .read("ec-ca.key")
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    self_signed(&scratch, "ec-ca.key", "ec-ca.crt", "/CN=SEC1 CA", "30", &[]);
    for ca in ["rsa-ca", "ec-ca"] {
        let out = format!("client-{ca}");
        let (cert, key) = (format!("{ca}.crt"), format!("{ca}.key"));
        scratch.moat_ok(&words(&sign_line("client.csr", &cert, &key, &out)));
        let (ok, output) = verify_as(&scratch, &cert, "sslclient", &[], &format!("{out}.crt"));
        assert!(ok, "{ca}: {output}");
    }
}

#[test]
fn legacy_encrypted_pem_key_is_refused_with_the_conversion_command() {
    let scratch = Scratch::new();
    guide_csr(&scratch, "client");
    scratch.write("pass", "legacy\n");
    scratch.openssl(&["genrsa", "-out", "plain.key", "2048"]);
    self_signed(&scratch, "plain.key", "ca.crt", "/CN=Legacy CA", "30", &[]);
    scratch.openssl(&words(
        "rsa -in plain.key -aes256 -traditional -passout file:pass -out legacy.key",
    ));
    assert!(
        scratch
            .read("legacy.key")
            .contains("Proc-Type: 4,ENCRYPTED")
    );
    let pass = ["--passphrase-file", "pass"];
    let line = sign_line("client.csr", "ca.crt", "legacy.key", "client");
    moat_refuses(
        &scratch,
        &with(&words(&line), &pass),
        "legacy.key: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in legacy.key -out legacy.key.pk8`",
    );
    assert!(!scratch.exists("client.crt"));
    // The suggested command works, and the converted key signs. (openssl reads one line per
    // use of a file, so the new passphrase comes from a copy.)
    scratch.write("pass-again", "legacy\n");
    scratch.openssl(&words(
        "pkcs8 -topk8 -v2 aes-256-cbc -in legacy.key -passin file:pass -passout file:pass-again -out legacy.key.pk8",
    ));
    let line = sign_line("client.csr", "ca.crt", "legacy.key.pk8", "client");
    scratch.moat_ok(&with(&words(&line), &pass));
}
