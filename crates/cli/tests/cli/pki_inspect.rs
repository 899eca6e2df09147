//! `moat pki inspect` against certificates, CSRs, CRLs and keys made by openssl.

use serde_json::Value;

use crate::common::{Scratch, serial_of};
use crate::pki_support::{csr, ec_key, openssl_sign, self_signed, words};

/// `moat pki inspect --json FILES`, parsed; the command must succeed.
fn inspect_json(scratch: &Scratch, files: &[&str]) -> Vec<Value> {
    let stdout = scratch.moat_ok(&[&["pki", "inspect", "--json"][..], files].concat());
    let json: Value = serde_json::from_str(&stdout).expect("inspect --json prints JSON");
    json.as_array().expect("a JSON array").clone()
}

fn warnings(finding: &Value) -> Vec<String> {
    finding["warnings"]
        .as_array()
        .expect("warnings array")
        .iter()
        .map(|warning| warning.as_str().expect("string warning").to_owned())
        .collect()
}

fn has_warning(finding: &Value, needle: &str) -> bool {
    warnings(finding)
        .iter()
        .any(|warning| warning.contains(needle))
}

/// Asserts that one of the finding's warnings holds `needle`, showing them all if not.
fn assert_warns(finding: &Value, needle: &str) {
    assert!(
        has_warning(finding, needle),
        "{needle:?} not in the warnings of {}: {:?}",
        finding["subject"],
        warnings(finding)
    );
}

/// Asserts that the finding has no warnings, showing them if it has.
fn assert_no_warnings(finding: &Value) {
    assert!(
        warnings(finding).is_empty(),
        "unexpected warnings of {}: {:?}",
        finding["subject"],
        warnings(finding)
    );
}

/// A CA made with `openssl req -x509` (v3, cA=true) plus an `openssl ca` setup for custom dates,
/// extensions and CRLs.
fn test_ca() -> Scratch {
    let scratch = Scratch::new();
    scratch.openssl(&["genrsa", "-out", "ca.key", "2048"]);
    let extensions = [
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:1",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    self_signed(
        &scratch,
        "ca.key",
        "ca.crt",
        "/CN=Inspect Test CA/O=Lab",
        "365",
        &extensions,
    );
    std::fs::create_dir(scratch.join("newcerts")).unwrap();
    scratch.write("index.txt", "");
    scratch.write("serial", "1000\n");
    scratch.write("crlnumber", "07\n");
    scratch.write(
        "ca.cnf",
        "[ ca ]\ndefault_ca = lab\n[ lab ]\ndatabase = index.txt\nnew_certs_dir = newcerts\n\
         serial = serial\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_days = 30\n\
         default_crl_days = 7\npolicy = any\nunique_subject = no\ncopy_extensions = copy\n\
         certificate = ca.crt\nprivate_key = ca.key\n\
         [ any ]\ncommonName = supplied\n\
         [ client ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n\
         [ server ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:app.example.com\n\
         [ server_no_san ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n\
         [ email ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = emailProtection\n",
    );
    scratch
}

/// Issues `NAME.crt` for CN=`cn` through `openssl ca` with an extension section and dates;
/// returns the certificate's file name.
fn issue(
    ca: &Scratch,
    name: &str,
    cn: &str,
    extensions: &str,
    dates: Option<(&str, &str)>,
) -> String {
    let key = format!("{name}.key");
    let csr_file = format!("{name}.csr");
    let crt = format!("{name}.crt");
    ca.openssl(&["genrsa", "-out", &key, "2048"]);
    csr(ca, &key, &csr_file, &format!("/CN={cn}"), &[]);
    let line = format!(
        "ca -batch -notext -config ca.cnf -extensions {extensions} -in {csr_file} -out {crt}"
    );
    let mut args = words(&line);
    if let Some((start, end)) = dates {
        args.extend_from_slice(&["-startdate", start, "-enddate", end]);
    }
    ca.openssl(&args);
    crt
}

/// The client certificate exactly as the ngrok guide makes it: `openssl x509 -req` with no
/// extension file, which yields X.509 version 1.
fn issue_v1_client(ca: &Scratch) {
    ca.openssl(&["genrsa", "-out", "ngrokclient.key", "2048"]);
    csr(
        ca,
        "ngrokclient.key",
        "ngrokclient.csr",
        "/CN=ngrok client",
        &[],
    );
    let extra = words("-days 365 -sha256 -CAcreateserial");
    openssl_sign(
        ca,
        "ngrokclient.csr",
        "ca.crt",
        "ca.key",
        "ngrokclient.crt",
        &extra,
    );
}

/// Writes `out` as the files `parts` one after the other.
fn concat(scratch: &Scratch, out: &str, parts: &[&str]) {
    let text: String = parts.iter().map(|part| scratch.read(part)).collect();
    scratch.write(out, text);
}

fn openssl_sha256(scratch: &Scratch, cert: &str) -> String {
    let line = scratch.openssl(&["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
    line.trim().rsplit('=').next().unwrap().to_owned()
}

#[test]
fn ngrok_guide_v1_client_is_reported_as_version_1_with_a_warning() {
    let ca = test_ca();
    issue_v1_client(&ca);
    let findings = inspect_json(&ca, &["ngrokclient.crt"]);
    assert_eq!(findings.len(), 1);
    let cert = &findings[0];
    assert_eq!(cert["kind"], "certificate");
    assert_eq!(cert["version"], 1);
    assert_eq!(cert["subject"], "CN=ngrok client");
    assert_eq!(cert["issuer"], "CN=Inspect Test CA, O=Lab");
    assert_eq!(cert["serial"], serial_of(&ca, "ngrokclient.crt"));
    assert_eq!(
        cert["sha256_fingerprint"],
        openssl_sha256(&ca, "ngrokclient.crt")
    );
    assert_eq!(cert["public_key"], "RSA 2048");
    assert!(cert["basic_constraints"].is_null());
    assert!(cert["extended_key_usage"].is_null());
    assert_warns(cert, "X.509 version 1");
    assert!(!has_warning(cert, "expired"));
}

#[test]
fn v3_ca_shows_basic_constraints_key_usage_and_days_left_without_warnings() {
    let ca = test_ca();
    let findings = inspect_json(&ca, &["ca.crt"]);
    let cert = &findings[0];
    assert_eq!(cert["version"], 3);
    assert_eq!(cert["basic_constraints"]["ca"], true);
    assert_eq!(cert["basic_constraints"]["path_len"], 1);
    assert_eq!(cert["basic_constraints"]["critical"], true);
    assert_eq!(
        cert["key_usage"],
        serde_json::json!(["keyCertSign", "cRLSign"])
    );
    assert_eq!(cert["self_signed"], true);
    let days_left = cert["days_left"].as_i64().unwrap();
    assert!((364..=365).contains(&days_left), "days_left {days_left}");
    assert_no_warnings(cert);
}

#[test]
fn ca_bundle_with_a_leaf_warns_that_the_leaf_is_not_a_ca() {
    let ca = test_ca();
    issue(&ca, "client", "bundled leaf", "client", None);
    concat(&ca, "cas.pem", &["ca.crt", "client.crt"]);
    let findings = inspect_json(&ca, &["cas.pem"]);
    assert_eq!(
        findings.len(),
        2,
        "each certificate of the bundle is reported"
    );
    assert_no_warnings(&findings[0]);
    assert_warns(
        &findings[1],
        "certificate #2 (CN=bundled leaf) is not a CA (basicConstraints cA=false)",
    );
    assert!(has_warning(&findings[1], "remove it from the bundle"));
}

#[test]
fn leaf_followed_by_its_issuer_is_a_chain_not_a_bad_bundle() {
    let ca = test_ca();
    issue(&ca, "server", "app.example.com", "server", None);
    concat(&ca, "fullchain.pem", &["server.crt", "ca.crt"]);
    let findings = inspect_json(&ca, &["fullchain.pem"]);
    assert_eq!(findings.len(), 2);
    for finding in &findings {
        assert_no_warnings(finding);
    }
    assert_eq!(
        findings[0]["subject_alt_names"],
        serde_json::json!(["DNS:app.example.com"])
    );
    assert_eq!(
        findings[0]["extended_key_usage"],
        serde_json::json!(["serverAuth"])
    );
}

#[test]
fn leaf_in_a_file_named_like_a_ca_is_flagged() {
    let ca = test_ca();
    issue(&ca, "client", "lonely leaf", "client", None);
    std::fs::copy(ca.join("client.crt"), ca.join("root-ca.pem")).unwrap();
    let findings = inspect_json(&ca, &["root-ca.pem"]);
    assert_warns(&findings[0], "named like a CA file");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_flagged() {
    let ca = test_ca();
    issue(
        &ca,
        "old",
        "expired client",
        "client",
        Some(("20200101000000Z", "20200201000000Z")),
    );
    issue(
        &ca,
        "future",
        "future client",
        "client",
        Some(("20990101000000Z", "20991231000000Z")),
    );
    let findings = inspect_json(&ca, &["old.crt", "future.crt"]);
    let (old, future) = (&findings[0], &findings[1]);
    assert_eq!(old["not_after"], "2020-02-01T00:00:00Z");
    assert!(old["days_left"].as_i64().unwrap() < -1000);
    assert_warns(old, "expired on 2020-02-01T00:00:00Z");
    assert!(has_warning(old, "certificate_expired"));
    assert!(!has_warning(old, "not yet valid"));
    assert_eq!(future["not_before"], "2099-01-01T00:00:00Z");
    assert_warns(future, "not yet valid: valid from 2099-01-01T00:00:00Z");
    assert!(!has_warning(future, "expired"));
}

#[test]
fn client_certificate_without_client_auth_is_flagged() {
    let ca = test_ca();
    issue(&ca, "client-mail", "mail only", "email", None);
    issue(&ca, "client-server", "server eku", "server", None);
    issue(&ca, "client-ok", "proper client", "client", None);
    issue(&ca, "web", "no san server", "server_no_san", None);
    let findings = inspect_json(
        &ca,
        &[
            "client-mail.crt",
            "client-server.crt",
            "client-ok.crt",
            "web.crt",
        ],
    );
    for finding in &findings[..2] {
        assert_warns(
            finding,
            "has no clientAuth: a gateway refuses it as a client certificate",
        );
    }
    assert_no_warnings(&findings[2]);
    assert_eq!(
        findings[2]["extended_key_usage"],
        serde_json::json!(["clientAuth"])
    );
    // A server certificate in a file not named for clients is not nagged about clientAuth,
    // but a missing SAN would make clients refuse it.
    assert!(
        !has_warning(&findings[3], "clientAuth"),
        "{:?}",
        warnings(&findings[3])
    );
    assert!(has_warning(&findings[3], "without subjectAltName"));
}

#[test]
fn csr_shows_requested_sans_and_whether_its_signature_verifies() {
    let scratch = Scratch::new();
    ec_key(&scratch, "req.key");
    let sans = ["-addext", "subjectAltName=DNS:api.example.com,IP:10.0.0.7"];
    csr(
        &scratch,
        "req.key",
        "req.csr",
        "/CN=api.example.com/O=Lab",
        &sans,
    );
    scratch.openssl(&words("req -in req.csr -outform DER -out req.der"));
    // Flip one bit of the signature: the last byte of the DER is inside it.
    let mut der = std::fs::read(scratch.join("req.der")).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    scratch.write("tampered.der", der);

    let findings = inspect_json(&scratch, &["req.csr", "tampered.der"]);
    let (good, bad) = (&findings[0], &findings[1]);
    assert_eq!(good["kind"], "certificate_request");
    assert_eq!(good["subject"], "CN=api.example.com, O=Lab");
    assert_eq!(good["public_key"], "ECDSA P-256");
    assert_eq!(
        good["requested_subject_alt_names"],
        serde_json::json!(["DNS:api.example.com", "IP:10.0.0.7"])
    );
    assert_eq!(good["signature_valid"], true);
    assert!(warnings(good).is_empty());
    assert_eq!(bad["kind"], "certificate_request");
    assert_eq!(bad["signature_valid"], false);
    assert!(has_warning(bad, "signature does not verify"));
}

#[test]
fn crl_from_openssl_ca_lists_revoked_serials_with_reasons() {
    let ca = test_ca();
    let revoked = issue(&ca, "lost", "lost laptop", "client", None);
    issue(&ca, "kept", "kept laptop", "client", None);
    let line = format!("ca -config ca.cnf -revoke {revoked} -crl_reason keyCompromise");
    ca.openssl(&words(&line));
    ca.openssl(&words("ca -config ca.cnf -gencrl -out crl.pem"));
    ca.openssl(&words("crl -in crl.pem -outform DER -out crl.der"));
    let serial = serial_of(&ca, "lost.crt");

    let findings = inspect_json(&ca, &["crl.pem", "crl.der"]);
    for crl in &findings {
        assert_eq!(crl["kind"], "crl");
        assert_eq!(crl["issuer"], "CN=Inspect Test CA, O=Lab");
        assert_eq!(crl["crl_number"], "7");
        assert!(crl["next_update"].is_string());
        let revoked = crl["revoked"].as_array().unwrap();
        assert_eq!(revoked.len(), 1, "only the revoked certificate is listed");
        assert_eq!(revoked[0]["serial"], serial);
        assert_eq!(revoked[0]["reason"], "keyCompromise");
        assert!(warnings(crl).is_empty());
    }
}

#[test]
fn keys_show_type_and_size_but_never_key_material() {
    let scratch = Scratch::new();
    for line in [
        "genrsa -out rsa8.key 3072",
        "rsa -in rsa8.key -traditional -out rsa1.key",
        "ecparam -genkey -name secp384r1 -out ec.key",
        "genpkey -algorithm ed25519 -out ed.key",
        "pkey -in rsa8.key -aes256 -passout pass:secret -out enc.key",
        "pkey -in rsa8.key -pubout -out pub.pem",
    ] {
        scratch.openssl(&words(line));
    }
    let files = [
        "rsa8.key", "rsa1.key", "ec.key", "ed.key", "enc.key", "pub.pem",
    ];

    let findings = inspect_json(&scratch, &files);
    let summary: Vec<(String, String, Value)> = findings
        .iter()
        .map(|finding| {
            (
                finding["kind"].as_str().unwrap().to_owned(),
                finding["format"].as_str().unwrap().to_owned(),
                finding["key_type"].clone(),
            )
        })
        .collect();
    let expected = [
        ("private_key", "PKCS#8", Value::from("RSA 3072")),
        ("private_key", "PKCS#1", Value::from("RSA 3072")),
        ("private_key", "SEC1", Value::from("ECDSA P-384")),
        ("private_key", "PKCS#8", Value::from("Ed25519")),
        ("private_key", "encrypted PKCS#8", Value::Null),
        (
            "public_key",
            "SubjectPublicKeyInfo",
            Value::from("RSA 3072"),
        ),
    ];
    let expected: Vec<(String, String, Value)> = expected
        .into_iter()
        .map(|(kind, format, key_type)| (kind.to_owned(), format.to_owned(), key_type))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(findings[4]["encrypted"], true);

    // No line of any key body may appear in either output format.
    let outputs = [
        scratch.moat_ok(&[&["pki", "inspect"][..], &files[..]].concat()),
        scratch.moat_ok(&[&["pki", "inspect", "--json"][..], &files[..]].concat()),
    ];
    for file in &files[..5] {
        let pem = scratch.read(file);
        for line in pem
            .lines()
            .filter(|line| !line.starts_with("-----") && line.len() > 16)
        {
            for output in &outputs {
                assert!(
                    !output.contains(line),
                    "{file}: key material leaked: {line}"
                );
            }
        }
    }
}

#[test]
fn text_output_shows_fields_days_left_and_warnings() {
    let ca = test_ca();
    issue_v1_client(&ca);
    let text = ca.moat_ok(&["pki", "inspect", "ca.crt", "ngrokclient.crt"]);
    assert!(text.contains("ca.crt #1: certificate"), "{text}");
    assert!(text.contains("ngrokclient.crt #1: certificate"), "{text}");
    assert!(
        text.contains("Subject:              CN=Inspect Test CA, O=Lab"),
        "{text}"
    );
    assert!(
        text.contains("Basic constraints:    CA, pathLen 1, critical"),
        "{text}"
    );
    assert!(text.contains("days left)"), "{text}");
    assert!(
        text.contains("Version:              1 (X.509 v1)"),
        "{text}"
    );
    assert!(
        text.contains("WARNING:              X.509 version 1"),
        "{text}"
    );
    let fingerprint = openssl_sha256(&ca, "ca.crt");
    assert!(
        text.contains(&format!("SHA-256 fingerprint:  {fingerprint}")),
        "{text}"
    );
}

#[test]
fn unreadable_and_unrecognised_files_fail_naming_the_file() {
    let scratch = Scratch::new();
    scratch.write("notes.txt", "just some text\n");
    let stderr = scratch.moat_err(&["pki", "inspect", "notes.txt", "missing.pem"]);
    assert!(
        stderr.contains("notes.txt: no certificate, CSR, CRL or key found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing.pem: cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn legacy_encrypted_pem_key_is_reported_with_the_conversion_command() {
    let scratch = Scratch::new();
    scratch.openssl(&["genrsa", "-out", "plain.key", "2048"]);
    scratch.openssl(&words(
        "rsa -in plain.key -traditional -aes256 -passout pass:secret -out legacy.key",
    ));
    let findings = inspect_json(&scratch, &["legacy.key"]);
    assert_eq!(findings[0]["format"], "legacy encrypted PEM");
    assert_eq!(findings[0]["encrypted"], true);
    assert!(has_warning(&findings[0], "openssl pkcs8 -topk8"));
}

#[test]
fn combined_pem_with_a_key_of_another_certificate_is_flagged() {
    let ca = test_ca();
    issue(&ca, "client", "combined client", "client", None);
    concat(&ca, "client.pem", &["client.crt", "client.key"]);
    concat(&ca, "mixed.pem", &["client.crt", "ca.key"]);
    let findings = inspect_json(&ca, &["client.pem", "mixed.pem"]);
    assert_eq!(findings.len(), 4);
    assert_eq!(findings[1]["kind"], "private_key");
    assert_no_warnings(&findings[1]);
    assert_warns(
        &findings[3],
        "this key does not belong to the certificate(s) in the same file (CN=combined client)",
    );
}
