//! The Cloudflare guide's cfssl workflow (seeds/004) with moat, and interop with cfssl both ways.

use crate::common::{Scratch, serial_of, text_of};
use crate::pki_support::{assert_lifetime_days, csr, moat_refuses, verify_as, with, words};

/// `ca-csr.json` exactly as in the guide except where a test says otherwise.
const CA_CSR: &str = r#"{
  "CN": "Access Testing CA",
  "key": {
    "algo": "rsa",
    "size": 4096
  },
  "names": [
    {
      "C": "US",
      "L": "Austin",
      "O": "Access Testing",
      "OU": "TX",
      "ST": "Texas"
    }
  ]
}"#;

/// `ca-config.json` exactly as in the guide.
const CA_CONFIG: &str = r#"{
  "signing": {
    "default": {
      "expiry": "8760h"
    },
    "profiles": {
      "server": {
        "usages": ["signing", "key encipherment", "server auth"],
        "expiry": "8760h"
      },
      "client": {
        "usages": ["signing", "key encipherment", "client auth"],
        "expiry": "8760h"
      }
    }
  }
}"#;

/// `client-csr.json` exactly as in the guide, including `"hosts": [""]`.
const CLIENT_CSR: &str = r#"{
  "CN": "James Royal",
  "hosts": [""],
  "key": {
    "algo": "rsa",
    "size": 4096
  },
  "names": [
    {
      "C": "US",
      "L": "Austin",
      "O": "Access",
      "OU": "Access Admins",
      "ST": "Texas"
    }
  ]
}"#;

fn guide_files(scratch: &Scratch, key_size: &str) {
    scratch.write("ca-csr.json", CA_CSR.replace("4096", key_size));
    scratch.write("ca-config.json", CA_CONFIG);
    scratch.write("client-csr.json", CLIENT_CSR.replace("4096", key_size));
}

/// `moat pki issue` from the CA in `ca` of `csr_json` with `config`'s `profile`, into `out`.
fn issue_line(csr_json: &str, config: &str, profile: &str, out: &str) -> String {
    format!(
        "pki issue --ca ca --csr-json {csr_json} --config {config} --profile {profile} --out {out}"
    )
}

/// A moat CA from the guide's `ca-csr.json` and the guide's client certificate from it.
fn guide_ca_and_client(scratch: &Scratch) {
    scratch.moat_ok(&words("pki init-ca --csr-json ca-csr.json --out ca"));
    let line = issue_line("client-csr.json", "ca-config.json", "client", "client");
    scratch.moat_ok(&words(&line));
}

#[test]
fn guide_json_files_make_a_ca_and_client_certificate_with_moat() {
    let scratch = Scratch::new();
    guide_files(&scratch, "2048");
    guide_ca_and_client(&scratch);
    let ca = text_of(&scratch, "ca/ca.crt");
    assert!(ca.contains("Subject: C = US, ST = Texas, L = Austin, O = Access Testing, OU = TX, CN = Access Testing CA"), "{ca}");
    assert!(ca.contains("Public-Key: (2048 bit)"), "{ca}");
    let client = text_of(&scratch, "client.crt");
    assert!(client.contains("Subject: C = US, ST = Texas, L = Austin, O = Access, OU = Access Admins, CN = James Royal"), "{client}");
    assert!(
        client.contains("Digital Signature, Key Encipherment"),
        "{client}"
    );
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        !client.contains("Subject Alternative Name"),
        "empty host must not become a SAN: {client}"
    );
    // "8760h" is 365 days.
    assert_lifetime_days(&scratch, "client.crt", 365);
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslclient", &[], "client.crt");
    assert!(ok, "{output}");
    // The server profile with hosts gives SANs and verifies as a server.
    scratch.write("server-csr.json", r#"{"CN": "iot.widgetcorp.tech", "hosts": ["iot.widgetcorp.tech", "127.0.0.1"], "key": {"algo": "ecdsa", "size": 256}}"#);
    let line = issue_line("server-csr.json", "ca-config.json", "server", "server");
    scratch.moat_ok(&words(&line));
    let names = words("-verify_hostname iot.widgetcorp.tech -verify_ip 127.0.0.1");
    let (ok, output) = verify_as(&scratch, "ca/ca.crt", "sslserver", &names, "server.crt");
    assert!(ok, "{output}");
}

#[test]
fn guide_rsa_4096_ca_from_json_has_the_guides_key_size() {
    let scratch = Scratch::new();
    guide_files(&scratch, "4096");
    scratch.moat_ok(&words("pki init-ca --csr-json ca-csr.json --out ca"));
    assert!(text_of(&scratch, "ca/ca.crt").contains("Public-Key: (4096 bit)"));
}

#[test]
fn cfssl_made_ca_signs_an_openssl_csr_through_moat() {
    let scratch = Scratch::new();
    guide_files(&scratch, "2048");
    scratch.shell("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca");
    assert!(scratch.exists("ca.pem") && scratch.exists("ca-key.pem"));
    scratch.openssl(&["genrsa", "-out", "client.key", "2048"]);
    csr(&scratch, "client.key", "client.csr", "/CN=James Royal", &[]);
    scratch.moat_ok(&words(
        "pki sign --csr client.csr --ca-cert ca.pem --ca-key ca-key.pem --config ca-config.json --profile client --out client",
    ));
    let (ok, output) = verify_as(&scratch, "ca.pem", "sslclient", &[], "client.crt");
    assert!(ok, "{output}");
}

#[test]
fn cfssl_gencrl_with_a_moat_ca_lists_a_moat_serial_and_openssl_verifies_it() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "moat CA for cfssl"]);
    let issue = words("pki issue --ca ca --profile client --out client");
    scratch.moat_ok(&with(&issue, &["--cn", "James Royal"]));
    let serial = serial_of(&scratch, "client.crt");
    // cfssl 1.2's gencrl reads each line as a decimal number, whatever the guide says.
    let decimal = u128::from_str_radix(&serial, 16).unwrap().to_string();
    scratch.write("serials.txt", format!("{decimal}\n"));
    scratch.shell("cfssl gencrl serials.txt ca/ca.crt ca/ca.key | base64 -d > cfssl.crl");
    let verified = scratch.openssl(&words(
        "crl -in cfssl.crl -inform DER -CAfile ca/ca.crt -noout -verify",
    ));
    assert!(verified.contains("verify OK"), "{verified}");
    let text = scratch.openssl(&words("crl -in cfssl.crl -inform DER -noout -text"));
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
}

#[test]
fn moat_crl_from_a_hex_serials_file_makes_openssl_refuse_the_certificate() {
    let scratch = Scratch::new();
    guide_files(&scratch, "2048");
    guide_ca_and_client(&scratch);
    let serial = serial_of(&scratch, "client.crt");
    scratch.write("serials.txt", format!("{serial}\n"));
    scratch.moat_ok(&words("pki crl --ca ca --serials serials.txt --out ca.crl"));
    scratch.write(
        "ca-and-crl.pem",
        format!("{}{}", scratch.read("ca/ca.crt"), scratch.read("ca.crl")),
    );
    let (ok, output) =
        scratch.openssl_verify(&["-crl_check", "-CAfile", "ca-and-crl.pem", "client.crt"]);
    assert!(!ok && output.contains("certificate revoked"), "{output}");
}

#[test]
fn unknown_profile_and_bad_expiry_in_the_config_are_refused_and_nothing_is_written() {
    let scratch = Scratch::new();
    guide_files(&scratch, "2048");
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca"]);
    scratch.write(
        "bad-config.json",
        CA_CONFIG.replace(
            "\"expiry\": \"8760h\"\n      },\n      \"client\"",
            "\"expiry\": \"1y\"\n      },\n      \"client\"",
        ),
    );
    scratch.write(
        "bad-usage.json",
        CA_CONFIG.replace("\"client auth\"", "\"client-auth\""),
    );
    for (config, profile, expected) in [
        (
            "ca-config.json",
            "peer",
            "unknown profile \"peer\" in ca-config.json; use one of: client, server",
        ),
        (
            "bad-config.json",
            "client",
            "bad-config.json profile \"server\": expiry \"1y\" has a unit other than h, m or s; write hours like \"8760h\" (cfssl) or pass --days N",
        ),
        (
            "bad-usage.json",
            "client",
            "bad-usage.json: unknown usage \"client-auth\" in profile \"client\"",
        ),
    ] {
        let line = issue_line("client-csr.json", config, profile, "client");
        moat_refuses(&scratch, &words(&line), expected);
    }
    assert!(!scratch.exists("client.crt") && !scratch.exists("client.key"));
}
