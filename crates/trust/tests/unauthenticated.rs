//! `allow_unauthenticated` (ngrok's "request" strategy): no certificate is let through for a later
//! 403, a bad certificate is still refused in the handshake.

mod support;

use moat_trust::{ClientVerifier, RefusalReason};
use rustls::AlertDescription;
use rustls::server::danger::ClientCertVerifier;
use rustls::version::{TLS12, TLS13};
use support::*;

#[test]
fn request_strategy_lets_a_certificateless_client_in_but_refuses_a_bad_certificate() {
    let ca = root_ca("Optional CA");
    let verifier = ClientVerifier::builder(bundle_of(&ca))
        .allow_unauthenticated()
        .build()
        .unwrap();
    assert!(verifier.offer_client_auth());
    assert!(!verifier.client_auth_mandatory());
    for version in [&TLS13, &TLS12] {
        let anonymous = handshake(
            server_config(verifier.clone(), &[version]),
            client_config(None),
        );
        assert!(anonymous.accepted, "{version:?}: {anonymous:?}");

        let good = handshake(
            server_config(verifier.clone(), &[version]),
            client_config(Some(client(&ca, 3).credentials())),
        );
        assert!(good.accepted, "{version:?}: {good:?}");

        let foreign = client(&root_ca("Unknown Optional CA"), 4);
        let refused = handshake(
            server_config(verifier.clone(), &[version]),
            client_config(Some(foreign.credentials())),
        );
        let context = format!("{version:?}");
        let (alert, reason) = (AlertDescription::UnknownCA, RefusalReason::UnknownCa);
        assert_refusal(refused, alert, reason, &context);
    }
}

#[test]
fn default_strategy_requires_a_certificate() {
    let ca = root_ca("Mandatory CA");
    let verifier = ClientVerifier::builder(bundle_of(&ca)).build().unwrap();
    assert!(verifier.client_auth_mandatory());
    let outcome = handshake(server_config(verifier, &[&TLS12]), client_config(None));
    let error = assert_refusal(
        outcome,
        AlertDescription::CertificateRequired,
        RefusalReason::NoCertificate,
        "no certificate",
    );
    let io_error = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    assert_eq!(
        RefusalReason::from_io_error(&io_error),
        Some(RefusalReason::NoCertificate)
    );
}
