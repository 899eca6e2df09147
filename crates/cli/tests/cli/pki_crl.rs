//! `moat pki revoke` and `moat pki crl`: CRLs that openssl verifies and uses to refuse revoked certificates.

use crate::common::{Scratch, serial_of};
use crate::pki_support::{ledger, moat_refuses, words};

fn ca_with_clients() -> Scratch {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "CRL CA"]);
    for name in ["alice", "bob", "carol"] {
        let line = format!("pki issue --ca ca --profile client --cn {name} --out {name}");
        scratch.moat_ok(&words(&line));
    }
    scratch
}

/// `openssl verify -crl_check` with the CA and a CRL in one file.
fn verify_with_crl(scratch: &Scratch, crl: &str, cert: &str) -> (bool, String) {
    let bundle = format!("{}{}", scratch.read("ca/ca.crt"), scratch.read(crl));
    scratch.write("ca-and-crl.pem", bundle);
    scratch.openssl_verify(&[
        "-crl_check",
        "-CAfile",
        "ca-and-crl.pem",
        "-purpose",
        "sslclient",
        cert,
    ])
}

#[test]
fn revoked_certificate_is_refused_by_openssl_crl_check_and_others_pass() {
    let scratch = ca_with_clients();
    let serial = serial_of(&scratch, "alice.crt");
    let line = format!("pki revoke --ca ca --serial {serial} --reason keyCompromise");
    let stdout = scratch.moat_ok(&words(&line));
    assert!(
        stdout.contains(&format!(
            "revoked serial {} (CN=alice), reason keyCompromise",
            serial.to_lowercase().trim_start_matches('0')
        )),
        "{stdout}"
    );
    scratch.moat_ok(&["pki", "crl", "--ca", "ca", "--out", "ca.crl"]);
    let verified = scratch.openssl(&words("crl -in ca.crl -CAfile ca/ca.crt -noout -verify"));
    assert!(verified.contains("verify OK"), "{verified}");
    let (ok, output) = verify_with_crl(&scratch, "ca.crl", "alice.crt");
    assert!(!ok && output.contains("certificate revoked"), "{output}");
    let (ok, output) = verify_with_crl(&scratch, "ca.crl", "bob.crt");
    assert!(ok, "{output}");
    let text = scratch.openssl(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
}

#[test]
fn revoke_by_certificate_file_and_reasons_appear_in_the_crl() {
    let scratch = ca_with_clients();
    scratch.moat_ok(&words(
        "pki revoke --ca ca --cert bob.crt --reason superseded",
    ));
    scratch.moat_ok(&words(
        "pki revoke --ca ca --cert carol.crt --reason cessationOfOperation",
    ));
    // Revoking again keeps the first reason.
    let again = scratch.moat_ok(&words(
        "pki revoke --ca ca --cert bob.crt --reason keyCompromise",
    ));
    assert!(
        again.contains("was already revoked") && again.contains("reason superseded"),
        "{again}"
    );
    scratch.moat_ok(&words("pki crl --ca ca --out ca.crl.der --der --days 2"));
    let text = scratch.openssl(&words("crl -in ca.crl.der -inform DER -noout -text"));
    assert!(
        text.contains("Superseded") && text.contains("Cessation Of Operation"),
        "{text}"
    );
    assert!(!text.contains("Key Compromise"), "{text}");
    scratch.openssl(&words(
        "crl -in ca.crl.der -inform DER -CAfile ca/ca.crt -noout -verify",
    ));
    let ledger = ledger(&scratch, "ca");
    assert_eq!(ledger["certificates"][1]["revoked"]["reason"], "superseded");
}

#[test]
fn crl_number_increases_with_every_crl() {
    let scratch = ca_with_clients();
    let mut numbers = Vec::new();
    for round in 0..3 {
        let out = format!("crl{round}.pem");
        let stdout = scratch.moat_ok(&["pki", "crl", "--ca", "ca", "--out", &out]);
        assert!(
            stdout.contains(&format!("CRL number {}", round + 1)),
            "{stdout}"
        );
        let number = scratch.openssl(&["crl", "-in", &out, "-noout", "-crlnumber"]);
        numbers.push(number.trim().to_owned());
    }
    assert_eq!(
        numbers,
        vec!["crlNumber=0x01", "crlNumber=0x02", "crlNumber=0x03"]
    );
}

#[test]
fn serials_file_adds_serials_and_openssl_refuses_them() {
    let scratch = ca_with_clients();
    let carol = serial_of(&scratch, "carol.crt");
    scratch.write("serials.txt", format!("# revoked by hand\n{carol}\n\n"));
    scratch.moat_ok(&words("pki crl --ca ca --out ca.crl --serials serials.txt"));
    let (ok, output) = verify_with_crl(&scratch, "ca.crl", "carol.crt");
    assert!(!ok && output.contains("certificate revoked"), "{output}");
    let (ok, output) = verify_with_crl(&scratch, "ca.crl", "alice.crt");
    assert!(ok, "{output}");
}

#[test]
fn unknown_serial_and_foreign_certificate_are_refused_and_the_ledger_is_unchanged() {
    let scratch = ca_with_clients();
    let before = scratch.read("ca/ledger.json");
    scratch.moat_ok(&["pki", "init-ca", "--out", "other", "--cn", "Other CA"]);
    scratch.moat_ok(&words(
        "pki issue --ca other --profile client --cn mallory --out mallory",
    ));
    for (line, expected) in [
        (
            "pki revoke --ca ca --serial 0bad",
            "serial bad is not in ca/ledger.json (not issued by this CA)",
        ),
        (
            "pki revoke --ca ca --serial xyz",
            "--serial: serial \"xyz\" is not a hexadecimal number",
        ),
        (
            "pki revoke --ca ca --cert mallory.crt",
            "mallory.crt: CN=mallory was not issued by this CA (CN=CRL CA); revoke it with the CA that issued it (CN=Other CA)",
        ),
    ] {
        moat_refuses(&scratch, &words(line), expected);
    }
    assert_eq!(scratch.read("ca/ledger.json"), before);
}

#[test]
fn existing_crl_is_replaced_only_with_force() {
    let scratch = ca_with_clients();
    scratch.moat_ok(&["pki", "crl", "--ca", "ca", "--out", "ca.crl"]);
    moat_refuses(
        &scratch,
        &["pki", "crl", "--ca", "ca", "--out", "ca.crl"],
        "ca.crl: already exists; pass --force",
    );
    scratch.moat_ok(&["pki", "crl", "--ca", "ca", "--out", "ca.crl", "--force"]);
    let number = scratch.openssl(&["crl", "-in", "ca.crl", "-noout", "-crlnumber"]);
    assert_eq!(number.trim(), "crlNumber=0x02");
}
