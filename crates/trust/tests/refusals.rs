//! Each refused client certificate aborts the handshake with the alert that names the cause,
//! and leaves one warn log line with the reason and the certificate's names.

mod support;

use std::sync::Arc;

use moat_trust::{ClientVerifier, RefusalReason};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::AlertDescription;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::UnixTime;
use support::*;
use time::{Duration, OffsetDateTime};

fn verifier_for(ca: &Ca) -> Arc<ClientVerifier> {
    ClientVerifier::builder(bundle_of(ca)).build().unwrap()
}

fn assert_refused(
    ca: &Ca,
    credentials: Option<&Leaf>,
    alert: AlertDescription,
    reason: RefusalReason,
) {
    let client = match credentials {
        Some(leaf) => {
            let (chain, key) = leaf.credentials();
            client_config_sending_raw_chain(chain, key)
        }
        None => client_config(None),
    };
    // Bad signatures share bad_certificate with malformed certificates on the wire.
    let expected = if reason == RefusalReason::BadSignature {
        RefusalReason::Malformed
    } else {
        reason
    };
    for version in [&TLS13, &TLS12] {
        let server = server_config(verifier_for(ca), &[version]);
        let outcome = handshake(server, client.clone());
        assert_refusal(outcome, alert, expected, &format!("{version:?}"));
    }
}

/// Asserts that a leaf of `ca` made from `spec` (signed directly by the CA) is refused with
/// `alert` and `reason`.
fn assert_leaf_refused(ca: &Ca, spec: LeafSpec, alert: AlertDescription, reason: RefusalReason) {
    assert_refused(ca, Some(&leaf(spec, ca, &[])), alert, reason);
}

/// A leaf valid from `from` days from now to `to` days from now.
fn dated(from: i64, to: i64) -> LeafSpec {
    LeafSpec {
        not_before: OffsetDateTime::now_utc() + Duration::days(from),
        not_after: OffsetDateTime::now_utc() + Duration::days(to),
        ..LeafSpec::default()
    }
}

/// Asserts that `leaf` of the CA `ca` is accepted with TLS 1.3.
fn assert_accepted_tls13(ca: &Ca, leaf: &Leaf) {
    let outcome = handshake(
        server_config(verifier_for(ca), &[&TLS13]),
        client_config(Some(leaf.credentials())),
    );
    assert!(outcome.accepted, "{outcome:?}");
}

#[test]
fn valid_client_is_accepted_with_tls12_and_tls13() {
    let ca = root_ca("Accepting CA");
    let leaf = client(&ca, 7);
    for version in [&TLS13, &TLS12] {
        let outcome = handshake(
            server_config(verifier_for(&ca), &[version]),
            client_config(Some(leaf.credentials())),
        );
        assert!(outcome.accepted, "{version:?}: {outcome:?}");
        outcome.server.unwrap();
    }
}

#[test]
fn client_without_certificate_is_refused_with_certificate_required() {
    let ca = root_ca("Required CA");
    assert_refused(
        &ca,
        None,
        AlertDescription::CertificateRequired,
        RefusalReason::NoCertificate,
    );
}

#[test]
fn client_of_foreign_ca_is_refused_with_unknown_ca() {
    let ca = root_ca("Trusted CA");
    let foreign = root_ca("Foreign CA");
    let leaf = client(&foreign, 8);
    assert_refused(
        &ca,
        Some(&leaf),
        AlertDescription::UnknownCA,
        RefusalReason::UnknownCa,
    );
}

#[test]
fn expired_client_is_refused_with_certificate_expired() {
    assert_leaf_refused(
        &root_ca("Expiry CA"),
        dated(-10, -1),
        AlertDescription::CertificateExpired,
        RefusalReason::Expired,
    );
}

#[test]
fn not_yet_valid_client_is_refused_with_certificate_expired() {
    assert_leaf_refused(
        &root_ca("Future CA"),
        dated(1, 10),
        AlertDescription::CertificateExpired,
        RefusalReason::NotYetValid,
    );
}

#[test]
fn client_with_tampered_signature_is_refused_with_bad_certificate() {
    let ca = root_ca("Signature CA");
    let mut leaf = client(&ca, 9);
    let mut der = leaf.der.to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    leaf.chain[0] = der.into();
    assert_refused(
        &ca,
        Some(&leaf),
        AlertDescription::BadCertificate,
        RefusalReason::BadSignature,
    );
}

#[test]
fn client_with_server_only_eku_is_refused_with_unsupported_certificate() {
    let server_only = LeafSpec {
        extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::default()
    };
    assert_leaf_refused(
        &root_ca("Usage CA"),
        server_only,
        AlertDescription::UnsupportedCertificate,
        RefusalReason::WrongUsage,
    );
}

#[test]
fn client_without_eku_is_accepted() {
    let ca = root_ca("No EKU CA");
    let no_eku = LeafSpec {
        extended_key_usages: vec![],
        ..LeafSpec::default()
    };
    assert_accepted_tls13(&ca, &leaf(no_eku, &ca, &[]));
}

#[test]
fn garbage_certificate_is_refused_with_bad_certificate() {
    let ca = root_ca("Garbage CA");
    let mut leaf = client(&ca, 10);
    leaf.chain[0] = vec![0x30, 0x03, 0x02, 0x01, 0x01].into();
    assert_refused(
        &ca,
        Some(&leaf),
        AlertDescription::BadCertificate,
        RefusalReason::Malformed,
    );
}

#[test]
fn client_chaining_through_an_intermediate_is_accepted() {
    let root = root_ca("Chain Root");
    let intermediate = intermediate_ca("Chain Intermediate", &root, 500);
    let leaf = leaf(LeafSpec::default(), &intermediate, &[&intermediate]);
    assert_accepted_tls13(&root, &leaf);
}

#[test]
fn client_leaving_out_its_intermediate_is_refused_with_unknown_ca() {
    let root = root_ca("Gap Root");
    let intermediate = intermediate_ca("Gap Intermediate", &root, 501);
    let leaf = leaf(LeafSpec::default(), &intermediate, &[]);
    assert_refused(
        &root,
        Some(&leaf),
        AlertDescription::UnknownCA,
        RefusalReason::UnknownCa,
    );
}

#[test]
fn refusal_logs_one_warning_with_reason_subject_issuer_and_serial() {
    let ca = root_ca("Logging CA");
    let foreign = root_ca("Stranger CA");
    let leaf = leaf(
        LeafSpec {
            common_name: "mallory".to_owned(),
            serial: 0xabcdef,
            ..LeafSpec::default()
        },
        &foreign,
        &[],
    );
    let server = server_config(verifier_for(&ca), &[&TLS13]);
    let (outcome, events) =
        capture_logs(|| handshake(server, client_config(Some(leaf.credentials()))));
    assert!(!outcome.accepted);
    let warnings: Vec<_> = events.iter().filter(|e| e["level"] == "WARN").collect();
    assert_eq!(warnings.len(), 1, "{events:#?}");
    let fields = &warnings[0]["fields"];
    assert_eq!(fields["reason"], "unknown_ca");
    assert_eq!(fields["subject"], "CN=mallory");
    assert_eq!(fields["issuer"], "CN=Stranger CA");
    assert_eq!(fields["serial"], "abcdef");
    let line = serde_json::to_string(&warnings[0]).unwrap();
    assert!(!line.contains("PRIVATE"), "{line}");
}

#[test]
fn refusal_reasons_have_stable_names_and_alerts() {
    let table = [
        (
            RefusalReason::NoCertificate,
            "no_certificate",
            AlertDescription::CertificateRequired,
        ),
        (
            RefusalReason::UnknownCa,
            "unknown_ca",
            AlertDescription::UnknownCA,
        ),
        (
            RefusalReason::BadSignature,
            "bad_signature",
            AlertDescription::BadCertificate,
        ),
        (
            RefusalReason::Expired,
            "expired",
            AlertDescription::CertificateExpired,
        ),
        (
            RefusalReason::NotYetValid,
            "not_yet_valid",
            AlertDescription::CertificateExpired,
        ),
        (
            RefusalReason::Revoked,
            "revoked",
            AlertDescription::CertificateRevoked,
        ),
        (
            RefusalReason::WrongUsage,
            "wrong_usage",
            AlertDescription::UnsupportedCertificate,
        ),
        (
            RefusalReason::Malformed,
            "malformed",
            AlertDescription::BadCertificate,
        ),
    ];
    assert_eq!(table.len(), RefusalReason::ALL.len());
    for (reason, name, alert) in table {
        assert_eq!(reason.as_str(), name);
        assert_eq!(reason.alert(), alert);
    }
}

/// The verifier remembers accepted chains; what it remembers must never outlive the chain's own
/// validity, nor cover a different chain.
#[test]
fn an_accepted_chain_is_refused_again_once_a_certificate_of_it_expires() {
    let root = root_ca("Remembering root");
    let intermediate = intermediate_ca("Remembering intermediate", &root, 2);
    let leaf = leaf(
        LeafSpec {
            serial: 31,
            ..LeafSpec::default()
        },
        &intermediate,
        &[&intermediate],
    );
    let verifier = verifier_for(&root);
    let (end_entity, intermediates) = leaf.chain.split_first().unwrap();
    let now = UnixTime::now();
    for _ in 0..2 {
        verifier
            .verify_with_reason(end_entity, intermediates, now)
            .unwrap();
    }
    let week_later =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() + 8 * 86_400));
    let refused = verifier
        .verify_with_reason(end_entity, intermediates, week_later)
        .unwrap_err();
    assert_eq!(refused.reason, RefusalReason::Expired);
    let hour_earlier =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() - 7_200));
    let refused = verifier
        .verify_with_reason(end_entity, intermediates, hour_earlier)
        .unwrap_err();
    assert_eq!(refused.reason, RefusalReason::NotYetValid);
    // The same leaf without its intermediate is another chain: not covered by the first.
    let refused = verifier
        .verify_with_reason(end_entity, &[], now)
        .unwrap_err();
    assert_eq!(refused.reason, RefusalReason::UnknownCa);
}
