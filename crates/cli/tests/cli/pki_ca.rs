//! `moat pki init-ca`: every key type, encrypted keys OpenSSL opens, intermediates and their chains.

use crate::common::{self, Scratch, mode, text_of};
use crate::pki_support::{ledger, ledger_count, moat_refuses, valid_in_days, verify_as, words};

#[test]
fn every_key_type_makes_a_self_signed_ca_with_critical_ca_constraints() {
    let scratch = Scratch::new();
    for (key_type, openssl_name) in [
        ("ecdsa-p256", "prime256v1"),
        ("ecdsa-p384", "secp384r1"),
        ("ed25519", "ED25519"),
        ("rsa-2048", "2048 bit"),
        ("rsa-3072", "3072 bit"),
        ("rsa-4096", "4096 bit"),
    ] {
        let dir = format!("ca-{key_type}");
        let line = format!("pki init-ca --out {dir} --cn Root --key-type {key_type}");
        scratch.moat_ok(&words(&line));
        let cert = format!("{dir}/ca.crt");
        let text = text_of(&scratch, &cert);
        assert!(text.contains(openssl_name), "{key_type}: {text}");
        assert!(
            text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE"),
            "{key_type}: {text}"
        );
        assert!(
            text.contains("Certificate Sign, CRL Sign"),
            "{key_type}: {text}"
        );
        assert!(
            text.contains("X509v3 Subject Key Identifier"),
            "{key_type}: {text}"
        );
        let (ok, output) = scratch.openssl_verify(&["-CAfile", &cert, &cert]);
        assert!(ok, "{key_type}: {output}");
        assert_eq!(
            mode(&scratch.join(&format!("{dir}/ca.key"))),
            0o600,
            "{key_type}"
        );
        assert_eq!(ledger(&scratch, &dir)["crl_number"], 0);
        assert_eq!(ledger_count(&scratch, &dir), Some(0));
    }
}

#[test]
fn default_ca_is_ecdsa_p256_valid_3650_days() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca"]);
    let text = text_of(&scratch, "ca/ca.crt");
    assert!(text.contains("prime256v1"), "{text}");
    assert!(text.contains("Subject: CN = moat CA"), "{text}");
    let line = format!("x509 -in ca/ca.crt -noout -checkend {}", 3649 * 86400);
    let end = scratch.openssl(&words(&line));
    assert!(end.contains("will not expire"), "{end}");
    assert!(
        !valid_in_days(&scratch, "ca/ca.crt", 3651),
        "should expire within 3651 days"
    );
}

#[test]
fn passphrase_file_encrypts_the_key_as_pkcs8_that_openssl_opens() {
    let scratch = Scratch::new();
    scratch.write("pass.txt", "correct horse\n");
    scratch.moat_ok(&words("pki init-ca --out ca --passphrase-file pass.txt"));
    let key = scratch.read("ca/ca.key");
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );
    let structure = scratch.openssl(&["asn1parse", "-in", "ca/ca.key"]);
    for algorithm in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
        assert!(
            structure.contains(algorithm),
            "{algorithm} missing: {structure}"
        );
    }
    scratch.openssl(&words("pkey -in ca/ca.key -passin file:pass.txt -noout"));
    let wrong = scratch.run(
        "openssl",
        &["pkey", "-in", "ca/ca.key", "-passin", "pass:nope", "-noout"],
    );
    assert!(!wrong.status.success());
    assert_eq!(mode(&scratch.join("ca/ca.key")), 0o600);
}

#[test]
fn passphrase_from_environment_encrypts_and_opens_the_key() {
    let scratch = Scratch::new();
    let output = scratch.moat_env(
        &["pki", "init-ca", "--out", "ca"],
        &[("MOAT_CA_PASSPHRASE", "from env")],
    );
    assert!(output.status.success(), "{}", common::combined(&output));
    scratch.openssl(&[
        "pkey",
        "-in",
        "ca/ca.key",
        "-passin",
        "pass:from env",
        "-noout",
    ]);
    let issued = scratch.moat_env(
        &words("pki issue --ca ca --profile client --cn alice --out alice"),
        &[("MOAT_CA_PASSPHRASE", "from env")],
    );
    assert!(issued.status.success(), "{}", common::combined(&issued));
    moat_refuses(
        &scratch,
        &words("pki issue --ca ca --profile client --cn bob --out bob"),
        "ca/ca.key: the private key is encrypted; pass its passphrase with --passphrase-file FILE or the MOAT_CA_PASSPHRASE environment variable",
    );
}

#[test]
fn intermediate_ca_has_path_length_zero_and_chains_to_the_root() {
    let scratch = Scratch::new();
    scratch.write("root-pass", "root secret\n");
    scratch.moat_ok(&words(
        "pki init-ca --out root --cn Root --passphrase-file root-pass",
    ));
    scratch.moat_ok(&words(
        "pki init-ca --out int --cn Issuing --parent root --parent-passphrase-file root-pass",
    ));
    let text = text_of(&scratch, "int/ca.crt");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Issuer: CN = Root"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    let (ok, output) = scratch.openssl_verify(&["-CAfile", "root/ca.crt", "int/ca.crt"]);
    assert!(ok, "{output}");
    // The root's ledger records the intermediate it signed.
    let ledger = ledger(&scratch, "root");
    assert_eq!(ledger["certificates"][0]["profile"], "intermediate-ca");
    assert_eq!(ledger["certificates"][0]["subject"], "CN=Issuing");

    // Leaves from the intermediate carry it in PREFIX.crt and verify through it.
    scratch.moat_ok(&words(
        "pki issue --ca int --profile client --cn alice --out alice",
    ));
    scratch.moat_ok(&words(
        "pki issue --ca int --profile server --cn app.example.com --out app",
    ));
    assert_eq!(
        scratch
            .read("alice.crt")
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    let (ok, output) = verify_as(
        &scratch,
        "root/ca.crt",
        "sslclient",
        &["-untrusted", "alice.crt"],
        "alice.crt",
    );
    assert!(ok, "{output}");
    let (ok, output) = verify_as(
        &scratch,
        "root/ca.crt",
        "sslserver",
        &["-untrusted", "int/ca.crt"],
        "app.crt",
    );
    assert!(ok, "{output}");
    // Without the intermediate the leaf does not verify: the chain really goes through it.
    let partial = ["-partial_chain"];
    let (ok, output) = verify_as(&scratch, "root/ca.crt", "sslclient", &partial, "alice.crt");
    assert!(!ok, "{output}");
}

#[test]
fn intermediate_below_a_path_length_zero_ca_is_refused_and_nothing_is_written() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "root"]);
    scratch.moat_ok(&[
        "pki", "init-ca", "--out", "int", "--parent", "root", "--cn", "Int",
    ]);
    moat_refuses(
        &scratch,
        &words("pki init-ca --out sub --parent int --cn Sub"),
        "int/ca.crt: the parent CA (CN=Int) allows 0 more CA level(s) below it",
    );
    assert!(!scratch.exists("sub/ca.crt") && !scratch.exists("sub/ca.key"));
    // A root-issued intermediate with room for one more level can have a sub-CA.
    scratch.moat_ok(&words(
        "pki init-ca --out int1 --parent root --cn Int1 --path-len 1",
    ));
    scratch.moat_ok(&[
        "pki", "init-ca", "--out", "sub1", "--parent", "int1", "--cn", "Sub1",
    ]);
    scratch.moat_ok(&words(
        "pki issue --ca sub1 --profile client --cn deep --out deep",
    ));
    assert_eq!(
        scratch
            .read("deep.crt")
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    let chain = ["-untrusted", "deep.crt"];
    let (ok, output) = verify_as(&scratch, "root/ca.crt", "sslclient", &chain, "deep.crt");
    assert!(ok, "{output}");
}

#[test]
fn existing_ca_is_not_replaced_without_force() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "First"]);
    let before = scratch.read("ca/ca.crt");
    moat_refuses(
        &scratch,
        &["pki", "init-ca", "--out", "ca", "--cn", "Second"],
        "ca/ca.crt: already exists; pass --force to overwrite it",
    );
    assert_eq!(scratch.read("ca/ca.crt"), before);
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "Second", "--force"]);
    assert!(text_of(&scratch, "ca/ca.crt").contains("CN = Second"));
}
