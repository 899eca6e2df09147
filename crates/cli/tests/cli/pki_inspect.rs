//! `moat pki inspect` against certificates, CSRs, CRLs and keys made by openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs a program in `dir` and returns its output.
fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Runs openssl in `dir` and fails the test when it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = run(dir, "openssl", args);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn moat(dir: &Path, args: &[&str]) -> Output {
    run(dir, env!("CARGO_BIN_EXE_moat"), args)
}

/// `moat pki inspect --json FILES`, parsed; the command must succeed.
fn inspect_json(dir: &Path, files: &[&str]) -> Vec<Value> {
    let mut args = vec!["pki", "inspect", "--json"];
    args.extend_from_slice(files);
    let output = moat(dir, &args);
    assert!(
        output.status.success(),
        "moat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON");
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

/// A CA made with `openssl req -x509` (v3, cA=true) plus an `openssl ca` setup for custom dates,
/// extensions and CRLs.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        openssl(path, &["genrsa", "-out", "ca.key", "2048"]);
        openssl(
            path,
            &[
                "req",
                "-new",
                "-x509",
                "-sha256",
                "-days",
                "365",
                "-key",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=Inspect Test CA/O=Lab",
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:1",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        std::fs::create_dir(path.join("newcerts")).unwrap();
        std::fs::write(path.join("index.txt"), "").unwrap();
        std::fs::write(path.join("serial"), "1000\n").unwrap();
        std::fs::write(path.join("crlnumber"), "07\n").unwrap();
        std::fs::write(
            path.join("ca.cnf"),
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
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues `NAME.crt` for CN=`cn` through `openssl ca` with an extension section and dates.
    fn issue(
        &self,
        name: &str,
        cn: &str,
        extensions: &str,
        dates: Option<(&str, &str)>,
    ) -> PathBuf {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subject = format!("/CN={cn}");
        openssl(self.path(), &["genrsa", "-out", &key, "2048"]);
        openssl(
            self.path(),
            &["req", "-new", "-key", &key, "-out", &csr, "-subj", &subject],
        );
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-extensions",
            extensions,
            "-in",
            &csr,
            "-out",
            &crt,
        ];
        if let Some((start, end)) = dates {
            args.extend_from_slice(&["-startdate", start, "-enddate", end]);
        }
        openssl(self.path(), &args);
        self.path().join(crt)
    }

    /// The client certificate exactly as the ngrok guide makes it: `openssl x509 -req` with no
    /// extension file, which yields X.509 version 1.
    fn issue_v1_client(&self) {
        openssl(self.path(), &["genrsa", "-out", "ngrokclient.key", "2048"]);
        openssl(
            self.path(),
            &[
                "req",
                "-new",
                "-key",
                "ngrokclient.key",
                "-out",
                "ngrokclient.csr",
                "-subj",
                "/CN=ngrok client",
            ],
        );
        openssl(
            self.path(),
            &[
                "x509",
                "-req",
                "-days",
                "365",
                "-sha256",
                "-in",
                "ngrokclient.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "ngrokclient.crt",
            ],
        );
    }

    fn concat(&self, out: &str, parts: &[&str]) {
        let mut text = String::new();
        for part in parts {
            text.push_str(&std::fs::read_to_string(self.path().join(part)).unwrap());
        }
        std::fs::write(self.path().join(out), text).unwrap();
    }
}

/// `openssl x509 -serial` prints `serial=HEX`; moat must print the same HEX.
fn openssl_serial(dir: &Path, cert: &str) -> String {
    openssl(dir, &["x509", "-in", cert, "-noout", "-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

fn openssl_sha256(dir: &Path, cert: &str) -> String {
    let line = openssl(
        dir,
        &["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
    );
    line.trim().rsplit('=').next().unwrap().to_owned()
}

#[test]
fn ngrok_guide_v1_client_is_reported_as_version_1_with_a_warning() {
    let ca = TestCa::new();
    ca.issue_v1_client();
    let findings = inspect_json(ca.path(), &["ngrokclient.crt"]);
    assert_eq!(findings.len(), 1);
    let cert = &findings[0];
    assert_eq!(cert["kind"], "certificate");
    assert_eq!(cert["version"], 1);
    assert_eq!(cert["subject"], "CN=ngrok client");
    assert_eq!(cert["issuer"], "CN=Inspect Test CA, O=Lab");
    assert_eq!(cert["serial"], openssl_serial(ca.path(), "ngrokclient.crt"));
    assert_eq!(
        cert["sha256_fingerprint"],
        openssl_sha256(ca.path(), "ngrokclient.crt")
    );
    assert_eq!(cert["public_key"], "RSA 2048");
    assert!(cert["basic_constraints"].is_null());
    assert!(cert["extended_key_usage"].is_null());
    assert!(
        has_warning(cert, "X.509 version 1"),
        "warnings: {:?}",
        warnings(cert)
    );
    assert!(!has_warning(cert, "expired"));
}

#[test]
fn v3_ca_shows_basic_constraints_key_usage_and_days_left_without_warnings() {
    let ca = TestCa::new();
    let findings = inspect_json(ca.path(), &["ca.crt"]);
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
    assert!(warnings(cert).is_empty(), "warnings: {:?}", warnings(cert));
}

#[test]
fn ca_bundle_with_a_leaf_warns_that_the_leaf_is_not_a_ca() {
    let ca = TestCa::new();
    ca.issue("client", "bundled leaf", "client", None);
    ca.concat("cas.pem", &["ca.crt", "client.crt"]);
    let findings = inspect_json(ca.path(), &["cas.pem"]);
    assert_eq!(
        findings.len(),
        2,
        "each certificate of the bundle is reported"
    );
    assert!(
        warnings(&findings[0]).is_empty(),
        "{:?}",
        warnings(&findings[0])
    );
    assert!(
        has_warning(
            &findings[1],
            "certificate #2 (CN=bundled leaf) is not a CA (basicConstraints cA=false)"
        ),
        "warnings: {:?}",
        warnings(&findings[1])
    );
    assert!(has_warning(&findings[1], "remove it from the bundle"));
}

#[test]
fn leaf_followed_by_its_issuer_is_a_chain_not_a_bad_bundle() {
    let ca = TestCa::new();
    ca.issue("server", "app.example.com", "server", None);
    ca.concat("fullchain.pem", &["server.crt", "ca.crt"]);
    let findings = inspect_json(ca.path(), &["fullchain.pem"]);
    assert_eq!(findings.len(), 2);
    for finding in &findings {
        assert!(
            warnings(finding).is_empty(),
            "unexpected warnings: {:?}",
            warnings(finding)
        );
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
    let ca = TestCa::new();
    ca.issue("client", "lonely leaf", "client", None);
    std::fs::copy(ca.path().join("client.crt"), ca.path().join("root-ca.pem")).unwrap();
    let findings = inspect_json(ca.path(), &["root-ca.pem"]);
    assert!(
        has_warning(&findings[0], "named like a CA file"),
        "warnings: {:?}",
        warnings(&findings[0])
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_flagged() {
    let ca = TestCa::new();
    ca.issue(
        "old",
        "expired client",
        "client",
        Some(("20200101000000Z", "20200201000000Z")),
    );
    ca.issue(
        "future",
        "future client",
        "client",
        Some(("20990101000000Z", "20991231000000Z")),
    );
    let findings = inspect_json(ca.path(), &["old.crt", "future.crt"]);
    let (old, future) = (&findings[0], &findings[1]);
    assert_eq!(old["not_after"], "2020-02-01T00:00:00Z");
    assert!(old["days_left"].as_i64().unwrap() < -1000);
    assert!(
        has_warning(old, "expired on 2020-02-01T00:00:00Z"),
        "warnings: {:?}",
        warnings(old)
    );
    assert!(has_warning(old, "certificate_expired"));
    assert!(!has_warning(old, "not yet valid"));
    assert_eq!(future["not_before"], "2099-01-01T00:00:00Z");
    assert!(
        has_warning(future, "not yet valid: valid from 2099-01-01T00:00:00Z"),
        "warnings: {:?}",
        warnings(future)
    );
    assert!(!has_warning(future, "expired"));
}

#[test]
fn client_certificate_without_client_auth_is_flagged() {
    let ca = TestCa::new();
    ca.issue("client-mail", "mail only", "email", None);
    ca.issue("client-server", "server eku", "server", None);
    ca.issue("client-ok", "proper client", "client", None);
    ca.issue("web", "no san server", "server_no_san", None);
    let findings = inspect_json(
        ca.path(),
        &[
            "client-mail.crt",
            "client-server.crt",
            "client-ok.crt",
            "web.crt",
        ],
    );
    for finding in &findings[..2] {
        assert!(
            has_warning(
                finding,
                "has no clientAuth: a gateway refuses it as a client certificate"
            ),
            "{}: {:?}",
            finding["subject"],
            warnings(finding)
        );
    }
    assert!(
        warnings(&findings[2]).is_empty(),
        "{:?}",
        warnings(&findings[2])
    );
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    openssl(
        path,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "req.key",
        ],
    );
    openssl(
        path,
        &[
            "req",
            "-new",
            "-key",
            "req.key",
            "-out",
            "req.csr",
            "-subj",
            "/CN=api.example.com/O=Lab",
            "-addext",
            "subjectAltName=DNS:api.example.com,IP:10.0.0.7",
        ],
    );
    openssl(
        path,
        &[
            "req", "-in", "req.csr", "-outform", "DER", "-out", "req.der",
        ],
    );
    // Flip one bit of the signature: the last byte of the DER is inside it.
    let mut der = std::fs::read(path.join("req.der")).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    std::fs::write(path.join("tampered.der"), der).unwrap();

    let findings = inspect_json(path, &["req.csr", "tampered.der"]);
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
    let ca = TestCa::new();
    let revoked = ca.issue("lost", "lost laptop", "client", None);
    ca.issue("kept", "kept laptop", "client", None);
    openssl(
        ca.path(),
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-revoke",
            revoked.to_str().unwrap(),
            "-crl_reason",
            "keyCompromise",
        ],
    );
    openssl(
        ca.path(),
        &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"],
    );
    openssl(
        ca.path(),
        &[
            "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
        ],
    );
    let serial = openssl_serial(ca.path(), "lost.crt");

    let findings = inspect_json(ca.path(), &["crl.pem", "crl.der"]);
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    openssl(path, &["genrsa", "-out", "rsa8.key", "3072"]);
    openssl(
        path,
        &["rsa", "-in", "rsa8.key", "-traditional", "-out", "rsa1.key"],
    );
    openssl(
        path,
        &["ecparam", "-genkey", "-name", "secp384r1", "-out", "ec.key"],
    );
    openssl(
        path,
        &["genpkey", "-algorithm", "ed25519", "-out", "ed.key"],
    );
    openssl(
        path,
        &[
            "pkey",
            "-in",
            "rsa8.key",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc.key",
        ],
    );
    openssl(
        path,
        &["pkey", "-in", "rsa8.key", "-pubout", "-out", "pub.pem"],
    );
    let files = [
        "rsa8.key", "rsa1.key", "ec.key", "ed.key", "enc.key", "pub.pem",
    ];

    let findings = inspect_json(path, &files);
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
    let mut args = vec!["pki", "inspect"];
    args.extend_from_slice(&files);
    let text = moat(path, &args);
    assert!(text.status.success());
    let json = moat(
        path,
        &[&["pki", "inspect", "--json"][..], &files[..]].concat(),
    );
    let outputs = [
        String::from_utf8_lossy(&text.stdout).into_owned(),
        String::from_utf8_lossy(&json.stdout).into_owned(),
    ];
    for file in &files[..5] {
        let pem = std::fs::read_to_string(path.join(file)).unwrap();
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
    let ca = TestCa::new();
    ca.issue_v1_client();
    let output = moat(ca.path(), &["pki", "inspect", "ca.crt", "ngrokclient.crt"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
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
    let fingerprint = openssl_sha256(ca.path(), "ca.crt");
    assert!(
        text.contains(&format!("SHA-256 fingerprint:  {fingerprint}")),
        "{text}"
    );
}

#[test]
fn unreadable_and_unrecognised_files_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "just some text\n").unwrap();
    let output = moat(dir.path(), &["pki", "inspect", "notes.txt", "missing.pem"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    openssl(path, &["genrsa", "-out", "plain.key", "2048"]);
    openssl(
        path,
        &[
            "rsa",
            "-in",
            "plain.key",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "legacy.key",
        ],
    );
    let findings = inspect_json(path, &["legacy.key"]);
    assert_eq!(findings[0]["format"], "legacy encrypted PEM");
    assert_eq!(findings[0]["encrypted"], true);
    assert!(has_warning(&findings[0], "openssl pkcs8 -topk8"));
}

#[test]
fn combined_pem_with_a_key_of_another_certificate_is_flagged() {
    let ca = TestCa::new();
    ca.issue("client", "combined client", "client", None);
    ca.concat("client.pem", &["client.crt", "client.key"]);
    ca.concat("mixed.pem", &["client.crt", "ca.key"]);
    let findings = inspect_json(ca.path(), &["client.pem", "mixed.pem"]);
    assert_eq!(findings.len(), 4);
    assert_eq!(findings[1]["kind"], "private_key");
    assert!(
        warnings(&findings[1]).is_empty(),
        "{:?}",
        warnings(&findings[1])
    );
    assert!(
        has_warning(
            &findings[3],
            "this key does not belong to the certificate(s) in the same file (CN=combined client)"
        ),
        "{:?}",
        warnings(&findings[3])
    );
}
