//! CA bundles: several CAs per file each let their clients in; anything that is not a CA, or not
//! a certificate, stops startup with a message naming the file, the position and the fix.

mod support;

use std::sync::{Arc, Mutex};

use moat_trust::{CaBundle, ClientVerifier, TrustError};
use rustls::version::TLS13;
use support::*;

#[test]
fn every_ca_of_a_multi_ca_bundle_lets_its_clients_in() {
    let dir = tempfile::tempdir().unwrap();
    let cas = [
        root_ca("Bundle CA One"),
        root_ca("Bundle CA Two"),
        root_ca("Bundle CA Three"),
    ];
    let pem: String = cas.iter().map(|ca| ca.pem.as_str()).collect();
    let path = write(dir.path(), "cas.pem", pem);
    let bundle = CaBundle::from_files(std::slice::from_ref(&path)).unwrap();
    assert_eq!(bundle.len(), 3);
    let subjects: Vec<_> = bundle.iter().map(|ca| ca.subject().to_owned()).collect();
    assert_eq!(
        subjects,
        ["CN=Bundle CA One", "CN=Bundle CA Two", "CN=Bundle CA Three"]
    );
    for (index, ca) in bundle.iter().enumerate() {
        assert_eq!(ca.source(), path);
        assert_eq!(ca.position(), index + 1);
        assert_eq!(ca.der(), &cas[index].der);
        assert!(ca.not_after() > time::OffsetDateTime::now_utc().unix_timestamp());
    }
    assert_lets_in_only_clients_of(bundle, &cas.iter().collect::<Vec<_>>());
}

/// A verifier over `bundle` accepts a client of each of `cas` and refuses a client of a CA
/// outside them with `unknown_ca`.
fn assert_lets_in_only_clients_of(bundle: CaBundle, cas: &[&Ca]) {
    let verifier = ClientVerifier::builder(bundle).build().unwrap();
    for (serial, ca) in cas.iter().enumerate() {
        let outcome = handshake(
            server_config(verifier.clone(), &[&TLS13]),
            client_config(Some(client(ca, serial as u64 + 1).credentials())),
        );
        assert!(outcome.accepted, "client of CA {}: {outcome:?}", serial + 1);
    }
    let foreign = client(&root_ca("Not In Bundle"), 9);
    let outcome = handshake(
        server_config(verifier, &[&TLS13]),
        client_config(Some(foreign.credentials())),
    );
    assert!(!outcome.accepted, "{outcome:?}");
    assert_eq!(
        outcome.client,
        Err(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        ))
    );
}

#[test]
fn cas_from_several_files_are_all_trusted_and_duplicates_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let one = root_ca("File CA One");
    let two = root_ca("File CA Two");
    let a = write(dir.path(), "a.pem", &one.pem);
    let b = write(dir.path(), "b.pem", format!("{}{}", two.pem, one.pem));
    let c = write(dir.path(), "c.der", &two.der);
    let bundle = CaBundle::from_files(&[a.clone(), b.clone(), c]).unwrap();
    assert_eq!(bundle.len(), 2);
    // Each CA once, where it first appeared: One as a.pem #1, Two as b.pem #1; One again in
    // b.pem and Two again in c.der add nothing.
    let kept: Vec<_> = bundle
        .iter()
        .map(|ca| (ca.der().to_vec(), ca.source().to_path_buf(), ca.position()))
        .collect();
    assert_eq!(kept, [(one.der.to_vec(), a, 1), (two.der.to_vec(), b, 1)]);
    // "All trusted": a client of each CA is accepted, a client of neither is not.
    assert_lets_in_only_clients_of(bundle, &[&one, &two]);
}

#[test]
fn certificate_request_names_every_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_one, _two, path) = two_roots(dir.path(), "Hinted CA One", "Hinted CA Two");
    let bundle = CaBundle::from_files(&[path]).unwrap();
    let expected: Vec<Vec<u8>> = bundle.iter().map(|ca| ca.subject_der().to_vec()).collect();
    let verifier = ClientVerifier::builder(bundle).build().unwrap();

    #[derive(Debug)]
    struct Recorder(Mutex<Vec<Vec<u8>>>);
    impl rustls::client::ResolvesClientCert for Recorder {
        fn resolve(
            &self,
            hints: &[&[u8]],
            _schemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            *self.0.lock().unwrap() = hints.iter().map(|h| h.to_vec()).collect();
            None
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let mut client = (*client_config(None)).clone();
    client.client_auth_cert_resolver = recorder.clone();
    handshake(server_config(verifier, &[&TLS13]), Arc::new(client));
    assert_eq!(*recorder.0.lock().unwrap(), expected);
}

#[test]
fn a_non_ca_in_the_bundle_is_refused_naming_file_position_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = root_ca("Real CA");
    let leaf = leaf(
        LeafSpec {
            common_name: "foo".to_owned(),
            ..LeafSpec::default()
        },
        &ca,
        &[],
    );
    let path = write(dir.path(), "cas.pem", format!("{}{}", ca.pem, leaf.pem));
    let error = CaBundle::from_files(std::slice::from_ref(&path)).unwrap_err();
    assert!(
        matches!(error, TrustError::NotACa { position: 2, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: certificate #2 (CN=foo) is not a CA (basicConstraints cA=false); remove it from the bundle",
            path.display()
        )
    );
}

#[test]
fn the_ngrok_guide_v1_client_given_as_a_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    openssl_v1_client(dir.path(), "/CN=Guide CA", "ngrokclient");
    let path = dir.path().join("ngrokclient.crt");
    let error = CaBundle::from_files(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: certificate #1 (CN=ngrokclient) is not a CA (X.509 v1 certificate without basicConstraints, so cA=false); remove it from the bundle",
            path.display()
        )
    );
}

#[test]
fn a_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_only = write(dir.path(), "key.pem", KeyPairPem::new().0);
    let error = CaBundle::from_files(std::slice::from_ref(&key_only)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: holds no certificate (no -----BEGIN CERTIFICATE----- block); give the PEM file of your CA certificate(s)",
            key_only.display()
        )
    );
    let empty = write(dir.path(), "empty.pem", "");
    assert!(matches!(
        CaBundle::from_files(&[empty]).unwrap_err(),
        TrustError::NoCertificate { .. }
    ));
}

#[test]
fn an_unreadable_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = CaBundle::from_files(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(error, TrustError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{error}"
    );
}

#[test]
fn broken_pem_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let error = CaBundle::from_files(std::slice::from_ref(&path)).unwrap_err();
    assert!(matches!(error, TrustError::Pem { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: invalid PEM (", path.display())),
        "{error}"
    );

    let garbage = write(
        dir.path(),
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
    );
    let error = CaBundle::from_files(std::slice::from_ref(&garbage)).unwrap_err();
    assert!(
        matches!(error, TrustError::BadCertificate { position: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn an_empty_bundle_cannot_build_a_verifier() {
    let error = ClientVerifier::builder(CaBundle::default())
        .build()
        .unwrap_err();
    assert!(matches!(error, TrustError::NoCas), "{error:?}");
}

/// A PEM private key and nothing else.
struct KeyPairPem(String);

impl KeyPairPem {
    fn new() -> Self {
        KeyPairPem(rcgen::KeyPair::generate().unwrap().serialize_pem())
    }
}
