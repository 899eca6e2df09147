//! X.509 v1 client certificates, as the ngrok guide's `openssl x509 -req` makes them (seeds/000),
//! are accepted when a configured CA signed them and refused, with the right alert, otherwise.
//!
//! The rustls client refuses to load a v1 certificate as its own (`with_client_auth_cert` checks
//! the key against the leaf with webpki), so these tests send the chain through a fixed resolver;
//! curl and openssl, which ngrok's users run, have no such check.

mod support;

use std::path::Path;
use std::sync::Arc;

use moat_trust::{CaBundle, ClientIdentity, ClientVerifier, RefusalReason, RevocationLists};
use rustls::AlertDescription;
use rustls::version::{TLS12, TLS13};
use support::*;

fn verifier(dir: &Path, crl: Option<&str>) -> Arc<ClientVerifier> {
    let cas = CaBundle::from_files(&[dir.join("ca.crt")]).unwrap();
    let mut builder = ClientVerifier::builder(cas.clone());
    if let Some(crl) = crl {
        builder = builder.with_crls(RevocationLists::from_files(&[dir.join(crl)], &cas).unwrap());
    }
    builder.build().unwrap()
}

fn outcome(
    verifier: &Arc<ClientVerifier>,
    dir: &Path,
    name: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> Outcome {
    let (chain, key) = credentials_of(dir, name);
    handshake(
        server_config(verifier.clone(), &[version]),
        client_config_sending_raw_chain(chain, key),
    )
}

/// The ngrok guide's CA `trusted` (with a client "friend") in one directory, configured in the
/// verifier; another openssl CA `other` with the v1 client `name` in a second directory.
fn trusted_and_other(
    trusted: &str,
    other: &str,
    name: &str,
) -> (tempfile::TempDir, tempfile::TempDir, Arc<ClientVerifier>) {
    let (trusted_dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    openssl_v1_client(trusted_dir.path(), trusted, "friend");
    openssl_v1_client(other_dir.path(), other, name);
    let verifier = verifier(trusted_dir.path(), None);
    (trusted_dir, other_dir, verifier)
}

#[test]
fn ngrok_guide_version_1_client_is_accepted_with_tls12_and_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_v1_client(d, "/CN=ngrok guide CA", "ngrokclient");
    let text = openssl(d, &["x509", "-in", "ngrokclient.crt", "-noout", "-text"]);
    assert!(
        text.contains("Version: 1 (0x0)"),
        "not a v1 certificate:\n{text}"
    );
    let verifier = verifier(d, None);
    for version in [&TLS13, &TLS12] {
        let outcome = outcome(&verifier, d, "ngrokclient", version);
        assert!(outcome.accepted, "{version:?}: {outcome:?}");
        outcome.server.unwrap();
    }
    let identity = ClientIdentity::from_chain(&credentials_of(d, "ngrokclient").0).unwrap();
    assert_eq!(identity.version, 1);
    assert_eq!(identity.common_name.as_deref(), Some("ngrokclient"));
    assert_eq!(identity.issuer, "CN=ngrok guide CA");
}

#[test]
fn version_1_client_listed_in_a_crl_is_refused_with_certificate_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_v1_client(d, "/CN=v1 CRL CA", "revoked");
    openssl_v1_leaf(d, "ca", "kept");
    // A CRL from the same CA key, made with `openssl ca -gencrl` over an index listing the serial.
    let serial = openssl(d, &["x509", "-in", "revoked.crt", "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    let expiry = "301231000000Z";
    write(
        d,
        "index.txt",
        format!("R\t{expiry}\t240101000000Z\t{serial}\tunknown\t/CN=revoked\n"),
    );
    write(d, "crlnumber", "01\n");
    write(
        d,
        "openssl.cnf",
        "[ ca ]\ndefault_ca = c\n[ c ]\ndatabase = ./index.txt\ncrlnumber = ./crlnumber\ncertificate = ./ca.crt\nprivate_key = ./ca.key\ndefault_md = sha256\ndefault_crl_days = 30\n",
    );
    openssl(
        d,
        &[
            "ca",
            "-config",
            "openssl.cnf",
            "-gencrl",
            "-out",
            "ca.crl.pem",
        ],
    );
    let verifier = verifier(d, Some("ca.crl.pem"));
    for version in [&TLS13, &TLS12] {
        let refused = outcome(&verifier, d, "revoked", version);
        let context = format!("{version:?}");
        let (alert, reason) = (AlertDescription::CertificateRevoked, RefusalReason::Revoked);
        assert_refusal(refused, alert, reason, &context);
        let kept = outcome(&verifier, d, "kept", version);
        assert!(kept.accepted, "{version:?}: {kept:?}");
    }
}

#[test]
fn version_1_client_of_a_foreign_ca_is_refused_with_unknown_ca() {
    let (_trusted, foreign, verifier) =
        trusted_and_other("/CN=Trusted v1 CA", "/CN=Foreign v1 CA", "stranger");
    let outcome = outcome(&verifier, foreign.path(), "stranger", &TLS13);
    assert_client_alert(&outcome, AlertDescription::UnknownCA, "stranger");
}

#[test]
fn version_1_client_signed_by_an_impostor_with_the_ca_name_is_refused_with_bad_certificate() {
    let (_trusted, impostor, verifier) =
        trusted_and_other("/CN=Shared Name CA", "/CN=Shared Name CA", "forger");
    let (outcome, events) = capture_logs(|| outcome(&verifier, impostor.path(), "forger", &TLS12));
    assert_client_alert(&outcome, AlertDescription::BadCertificate, "forger");
    let warning = first_warning(&events);
    assert_eq!(warning["fields"]["reason"], "bad_signature");
    assert_eq!(warning["fields"]["subject"], "CN=forger");
}

#[test]
fn expired_version_1_client_is_refused_with_certificate_expired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_v1_client(d, "/CN=v1 Expiry CA", "current");
    // `-days -1` makes a certificate whose notAfter is a day before now.
    openssl_request(d, "current.key", "old.csr", "/CN=old");
    openssl_x509_sign(d, "old.csr", "ca", "old.crt", "-1", "0x0102", &[]);
    std::fs::copy(d.join("current.key"), d.join("old.key")).unwrap();
    let verifier = verifier(d, None);
    let outcome = outcome(&verifier, d, "old", &TLS13);
    let (alert, reason) = (AlertDescription::CertificateExpired, RefusalReason::Expired);
    assert_refusal(outcome, alert, reason, "old");
}

#[test]
fn version_1_client_signed_by_an_intermediate_is_refused_with_unknown_ca_and_a_clear_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_root(d, "ca", "/CN=v1 Root", "30");
    // An intermediate CA (v3, cA=true) made by the root.
    openssl_key_and_request_for(d, "mid", "/CN=v1 Intermediate");
    write(
        d,
        "mid.ext",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
    );
    let extensions = ["-extfile", "mid.ext"];
    openssl_x509_sign(d, "mid.csr", "ca", "mid.crt", "30", "0x77", &extensions);
    openssl_v1_leaf(d, "mid", "deep");
    let verifier = verifier(d, None);
    let mut chain = credentials_of(d, "deep");
    chain.0.push(read_cert(&d.join("mid.crt")));
    let (outcome, events) = capture_logs(|| {
        handshake(
            server_config(verifier.clone(), &[&TLS13]),
            client_config_sending_raw_chain(chain.0, chain.1),
        )
    });
    assert_client_alert(&outcome, AlertDescription::UnknownCA, "deep");
    let warning = first_warning(&events);
    assert_eq!(warning["fields"]["reason"], "unknown_ca");
    let detail = warning["fields"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "X.509 v1 client certificate is accepted only when a configured CA signed it directly"
        ),
        "{detail}"
    );
}
