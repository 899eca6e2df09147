//! Who `moat http` lets in: clients of every CA in a bundle pass (also via an intermediate they
//! send); no certificate, a foreign CA, a not-yet-valid or wrong-usage certificate,
//! an expired certificate and a revoked one (CRL as PEM and as DER, version 2 or the version 1
//! that `openssl ca -gencrl` writes) are each refused with their own TLS alert, as both a rustls
//! client and `openssl s_client` see it.

use crate::common::words;
use crate::gateway_support;

use std::path::Path;

use gateway_support::{
    ClientOptions, Moat, TestCa, Usage, audit_events, moat_output, openssl, rustls_request,
    s_client, start_http_upstream, write_pair, write_server_pki,
};
use rustls::AlertDescription;

/// Two trusted CAs in one bundle, a foreign CA, and clients of each kind.
struct Fixture {
    dir: tempfile::TempDir,
    trusted_a: TestCa,
}

const REVOKED_SERIAL: u64 = 0x666;

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    write_server_pki(path, "Server CA", "server-ca.crt", 1);

    let trusted_a = TestCa::new("Team A CA");
    let trusted_b = TestCa::new("Team B CA");
    let foreign = TestCa::new("Foreign CA");
    std::fs::write(
        path.join("cas.pem"),
        format!("{}{}", trusted_a.pem, trusted_b.pem),
    )
    .unwrap();
    write_pair(path, "alice", &trusted_a.leaf("alice", Usage::Client, 10));
    write_pair(path, "bob", &trusted_b.leaf("bob", Usage::Client, 11));
    write_pair(path, "mallory", &foreign.leaf("mallory", Usage::Client, 12));
    write_pair(
        path,
        "expired",
        &trusted_a.client_dated("expired", 13, -30, -1),
    );
    write_pair(
        path,
        "revoked",
        &trusted_a.leaf("revoked", Usage::Client, REVOKED_SERIAL),
    );
    write_pair(path, "future", &trusted_a.client_dated("future", 14, 1, 30));
    // A server certificate presented as a client certificate: its EKU lacks clientAuth.
    write_pair(
        path,
        "wrong-usage",
        &trusted_a.leaf("wrong-usage", Usage::Server, 15),
    );
    // A client of an intermediate under CA B, sending the intermediate after its leaf.
    let intermediate = trusted_b.intermediate("Team B Issuing CA");
    let (leaf, key) = intermediate.leaf("carol", Usage::Client, 16);
    write_pair(path, "carol", &(format!("{leaf}{}", intermediate.pem), key));
    let (crl_pem, crl_der) = trusted_a.crl(&[REVOKED_SERIAL]);
    std::fs::write(path.join("a.crl.pem"), crl_pem).unwrap();
    std::fs::write(path.join("a.crl.der"), crl_der).unwrap();
    Fixture { dir, trusted_a }
}

fn start(dir: &Path, crl: &str) -> Moat {
    let upstream = start_http_upstream().to_string();
    Moat::serve_mtls(dir, "http", &upstream, &["--crl", crl])
}

fn rustls_as(dir: &Path, port: u16, client: Option<&str>) -> Result<String, rustls::Error> {
    let cert = client.map(|name| dir.join(format!("{name}.crt")));
    let key = client.map(|name| dir.join(format!("{name}.key")));
    let server_ca = dir.join("server-ca.crt");
    let identity = cert.as_deref().zip(key.as_deref());
    rustls_request(port, &ClientOptions::get(&server_ca, identity))
}

/// Asserts that `client` passes the handshake and gets the upstream's answer to `GET /`.
fn assert_admitted(moat: &Moat, dir: &Path, client: &str) {
    let response = rustls_as(dir, moat.port(), Some(client))
        .unwrap_or_else(|error| panic!("{client} refused: {error}; log:\n{}", moat.log()));
    assert!(
        response.starts_with("HTTP/1.1 200 OK"),
        "{client}: {response}"
    );
    assert!(
        response.ends_with("hello from upstream /"),
        "{client}: {response}"
    );
}

fn s_client_as(dir: &Path, port: u16, client: Option<&str>) -> String {
    let mut args = vec!["-CAfile", "server-ca.crt"];
    let cert = client.map(|name| format!("{name}.crt"));
    let key = client.map(|name| format!("{name}.key"));
    if let (Some(cert), Some(key)) = (&cert, &key) {
        args.extend_from_slice(&["-cert", cert, "-key", key]);
        // s_client sends only the first certificate of -cert; the rest goes in -cert_chain.
        if client == Some("carol") {
            args.extend_from_slice(&["-cert_chain", cert]);
        }
    }
    s_client(dir, port, &args)
}

#[test]
fn clients_of_each_bundled_ca_are_let_in() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let moat = start(dir, "a.crl.pem");
    for client in ["alice", "bob", "carol"] {
        assert_admitted(&moat, dir, client);
        let output = s_client_as(dir, moat.port(), Some(client));
        assert!(
            output.contains("hello from upstream /"),
            "{client}: {output}"
        );
    }
}

#[test]
fn refused_clients_receive_the_alert_matching_the_cause() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let moat = start(dir, "a.crl.pem");
    let cases = [
        (
            None,
            AlertDescription::CertificateRequired,
            "alert certificate required",
            "no_certificate",
        ),
        (
            Some("mallory"),
            AlertDescription::UnknownCA,
            "alert unknown ca",
            "unknown_ca",
        ),
        (
            Some("expired"),
            AlertDescription::CertificateExpired,
            "alert certificate expired",
            "expired",
        ),
        (
            Some("revoked"),
            AlertDescription::CertificateRevoked,
            "alert certificate revoked",
            "revoked",
        ),
        (
            Some("future"),
            AlertDescription::CertificateExpired,
            "alert certificate expired",
            "not_yet_valid",
        ),
        (
            Some("wrong-usage"),
            AlertDescription::UnsupportedCertificate,
            "alert unsupported certificate",
            "wrong_usage",
        ),
    ];
    for (client, alert, openssl_text, reason) in cases {
        let outcome = rustls_as(dir, moat.port(), client);
        assert_eq!(
            outcome,
            Err(rustls::Error::AlertReceived(alert)),
            "rustls client {client:?}"
        );
        let output = s_client_as(dir, moat.port(), client);
        assert!(
            output.contains(openssl_text),
            "s_client {client:?}: {output}"
        );
        assert!(
            !output.contains("hello from upstream"),
            "s_client {client:?}: {output}"
        );
        moat.wait_for_log(&format!("reason=\"{reason}\""));
    }
}

#[test]
fn a_der_crl_revokes_too() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let moat = start(dir, "a.crl.der");
    assert_eq!(
        rustls_as(dir, moat.port(), Some("revoked")),
        Err(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked
        ))
    );
    let output = s_client_as(dir, moat.port(), Some("revoked"));
    assert!(output.contains("alert certificate revoked"), "{output}");
    assert_admitted(&moat, dir, "alice");
}

#[test]
fn a_leaf_in_the_ca_bundle_stops_startup_naming_it() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let leaf = std::fs::read_to_string(dir.join("alice.crt")).unwrap();
    std::fs::write(
        dir.join("mixed.pem"),
        format!("{}{leaf}", fixture.trusted_a.pem),
    )
    .unwrap();
    let output = moat_output(
        dir,
        &words(
            "http 8080 --listen 127.0.0.1:0 --crt server.crt --key server.key --mutual-tls-cas mixed.pem",
        ),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mixed.pem: certificate #2 (CN=alice) is not a CA (basicConstraints"),
        "{stderr}"
    );
    assert!(stderr.contains("remove it from the bundle"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing listens: {:?}",
        output.stdout
    );
}

#[test]
fn request_mode_lets_a_client_without_certificate_finish_the_handshake_and_answers_403() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let upstream = start_http_upstream().to_string();
    let moat = Moat::serve_mtls(dir, "http", &upstream, &["--client-auth", "request"]);
    let response = rustls_as(dir, moat.port(), None).unwrap();
    assert!(response.starts_with("HTTP/1.1 403 Forbidden"), "{response}");
    assert!(response.contains("client certificate"), "{response}");
    assert!(!response.contains("hello from upstream"), "{response}");

    let response = rustls_as(dir, moat.port(), Some("alice")).unwrap();
    assert!(response.ends_with("hello from upstream /"), "{response}");
    // A certificate that is presented but invalid is still refused at the handshake.
    assert_eq!(
        rustls_as(dir, moat.port(), Some("mallory")),
        Err(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
}

/// An `openssl ca` directory `dir/name` with CA `/CN=OpenSSL-V1-CRL-CA` and no crlnumber file, so
/// `openssl ca -gencrl` writes version 1 CRLs (what nginx and HAProxy setups often load).
fn openssl_ca_without_crlnumber(dir: &Path, name: &str) -> std::path::PathBuf {
    let ca = dir.join(name);
    std::fs::create_dir_all(ca.join("newcerts")).unwrap();
    std::fs::write(
        ca.join("openssl.cnf"),
        "[ ca ]\ndefault_ca = CA_default\n\
         [ CA_default ]\ndir = .\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
         certificate = $dir/ca.crt\nprivate_key = $dir/ca.key\nserial = $dir/serial\n\
         default_md = sha256\ndefault_days = 30\ndefault_crl_days = 30\npolicy = policy_any\n\
         [ policy_any ]\ncommonName = supplied\n\
         [ client_ext ]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    std::fs::write(ca.join("index.txt"), "").unwrap();
    std::fs::write(ca.join("serial"), "1000\n").unwrap();
    openssl(&ca, "ecparam -name prime256v1 -genkey -noout -out ca.key");
    openssl(
        &ca,
        "req -new -x509 -sha256 -days 30 -key ca.key -out ca.crt -subj /CN=OpenSSL-V1-CRL-CA",
    );
    ca
}

/// A v3 client certificate `name` from an [`openssl_ca_without_crlnumber`] directory, for the
/// key in `name.key` (a P-256 key is made when there is none).
fn openssl_ca_client(ca: &Path, name: &str) {
    if !ca.join(format!("{name}.key")).exists() {
        openssl(
            ca,
            &format!("ecparam -name prime256v1 -genkey -noout -out {name}.key"),
        );
    }
    openssl(
        ca,
        &format!("req -new -key {name}.key -out {name}.csr -subj /CN={name}"),
    );
    openssl(
        ca,
        &format!(
            "ca -batch -config openssl.cnf -extensions client_ext -in {name}.csr -out {name}.crt"
        ),
    );
}

#[test]
fn a_version_1_crl_from_openssl_ca_revokes_and_a_stale_or_forged_one_is_handled_as_v2() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let ca = openssl_ca_without_crlnumber(dir, "ossl");
    openssl_ca_client(&ca, "v1-revoked");
    openssl_ca_client(&ca, "v1-good");
    openssl(&ca, "ca -config openssl.cnf -revoke v1-revoked.crt");
    openssl(&ca, "ca -config openssl.cnf -gencrl -out ../v1.crl");
    openssl(
        &ca,
        "ca -config openssl.cnf -gencrl -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out ../v1-stale.crl",
    );
    for name in ["v1-revoked", "v1-good"] {
        for extension in ["crt", "key"] {
            std::fs::copy(
                ca.join(format!("{name}.{extension}")),
                dir.join(format!("{name}.{extension}")),
            )
            .unwrap();
        }
    }
    let inspected = moat_output(dir, &["pki", "inspect", "v1.crl"]);
    let printed = String::from_utf8_lossy(&inspected.stdout);
    assert!(inspected.status.success(), "{printed}");
    assert!(
        printed.contains("CN=OpenSSL-V1-CRL-CA") && printed.contains("1000"),
        "{printed}"
    );
    let version: Vec<&str> = printed
        .lines()
        .find(|line| line.trim_start().starts_with("Version"))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(version, ["Version:", "1"], "{printed}");
    std::fs::write(
        dir.join("cas.pem"),
        format!(
            "{}{}",
            std::fs::read_to_string(dir.join("cas.pem")).unwrap(),
            std::fs::read_to_string(ca.join("ca.crt")).unwrap()
        ),
    )
    .unwrap();
    let upstream = start_http_upstream().to_string();

    // A fresh version 1 CRL: its revoked client gets certificate_revoked, the other one passes,
    // and `moat verify` agrees.
    {
        let moat = Moat::serve_mtls(dir, "http", &upstream, &["--crl", "v1.crl"]);
        assert_eq!(
            rustls_as(dir, moat.port(), Some("v1-revoked")),
            Err(rustls::Error::AlertReceived(
                AlertDescription::CertificateRevoked
            ))
        );
        let output = s_client_as(dir, moat.port(), Some("v1-revoked"));
        assert!(output.contains("alert certificate revoked"), "{output}");
        let response = rustls_as(dir, moat.port(), Some("v1-good")).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        let log = moat.wait_for_log("reason=\"revoked\"");
        assert!(log.contains("v1.crl"), "{log}");
    }
    let verify = |cert: &str, crl: &str| {
        moat_output(
            dir,
            &[
                "verify",
                "--cert",
                cert,
                "--mutual-tls-cas",
                "cas.pem",
                "--crl",
                crl,
            ],
        )
    };
    let refused = verify("v1-revoked.crt", "v1.crl");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("REFUSED at the handshake: revoked (TLS alert CertificateRevoked)"),
        "{refused:?}"
    );
    let passed = verify("v1-good.crt", "v1.crl");
    assert!(passed.status.success(), "{passed:?}");

    // A stale version 1 CRL: by default it still revokes; with --crl-expired refuse every client
    // of its CA gets unknown_ca, as with a stale version 2 CRL.
    {
        let moat = Moat::serve_mtls(dir, "http", &upstream, &["--crl", "v1-stale.crl"]);
        moat.wait_for_log("CRL is past its nextUpdate");
        assert_eq!(
            rustls_as(dir, moat.port(), Some("v1-revoked")),
            Err(rustls::Error::AlertReceived(
                AlertDescription::CertificateRevoked
            ))
        );
        assert_admitted(&moat, dir, "v1-good");
    }
    {
        let moat = Moat::serve_mtls(
            dir,
            "http",
            &upstream,
            &["--crl", "v1-stale.crl", "--crl-expired", "refuse"],
        );
        assert_eq!(
            rustls_as(dir, moat.port(), Some("v1-good")),
            Err(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
        );
        // Clients of the other CAs have no stale CRL and pass.
        assert_admitted(&moat, dir, "alice");
    }

    // A version 1 CRL signed by another key under the same CA name stops startup.
    let impostor = openssl_ca_without_crlnumber(dir, "impostor");
    openssl(
        &impostor,
        "ca -config openssl.cnf -gencrl -out ../forged-v1.crl",
    );
    let output = moat_output(
        dir,
        &[
            "http",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--mutual-tls-cas",
            "cas.pem",
            "--crl",
            "forged-v1.crl",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("forged-v1.crl: CRL #1 names CN=OpenSSL-V1-CRL-CA as issuer but its signature does not verify with that CA's key; regenerate the CRL with the CA's own key"),
        "{stderr}"
    );
}

#[test]
fn an_rsa_1024_client_is_refused_with_a_log_line_naming_the_fix() {
    let fixture = fixture();
    let dir = fixture.dir.path();
    let ca = openssl_ca_without_crlnumber(dir, "weak-ca");
    openssl(&ca, "genrsa -out weak.key 1024");
    openssl_ca_client(&ca, "weak");
    for extension in ["crt", "key"] {
        std::fs::copy(
            ca.join(format!("weak.{extension}")),
            dir.join(format!("weak.{extension}")),
        )
        .unwrap();
    }
    std::fs::copy(ca.join("ca.crt"), dir.join("cas.pem")).unwrap();
    let upstream = start_http_upstream().to_string();
    let moat = Moat::serve_mtls(dir, "http", &upstream, &["--audit-log", "audit.jsonl"]);
    // OpenSSL's default security level would refuse to sign with the key itself.
    for version in ["-tls1_3", "-tls1_2"] {
        let output = s_client(
            dir,
            moat.port(),
            &[
                "-CAfile",
                "server-ca.crt",
                "-cert",
                "weak.crt",
                "-key",
                "weak.key",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                version,
            ],
        );
        assert!(
            output.contains("alert decrypt error"),
            "{version}: {output}"
        );
    }
    let wanted = "client certificate refused reason=\"bad_signature\" subject=\"CN=weak\" issuer=\"CN=OpenSSL-V1-CRL-CA\" serial=\"1000\" detail=the client's key is RSA-1024: RSA keys shorter than 2048 bits are not accepted; reissue the client certificate with rsa-2048 or ecdsa-p256";
    let log = moat.wait_for_log(wanted);
    assert_eq!(log.matches(wanted).count(), 2, "{log}");
    let events = audit_events(&dir.join("audit.jsonl"), 2);
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event["event"], "tls_handshake", "{event}");
        assert_eq!(event["outcome"], "refused", "{event}");
        assert_eq!(event["reason"], "bad_signature", "{event}");
    }
}
