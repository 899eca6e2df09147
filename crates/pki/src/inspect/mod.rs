//! Reads certificates, CSRs, CRLs and keys and reports what a gateway cares about (never key material).
//!
//! Every PEM section (or a single DER object) becomes one [`Finding`]. Findings carry plain-language
//! warnings for what would make a gateway refuse the item: expired, not yet valid, a non-CA in a
//! CA bundle, a client certificate without `clientAuth`, an X.509 v1 certificate, and so on.

mod describe;
mod error;
mod heuristics;
mod keys;
mod oids;
mod pem;
mod render;
mod report;
mod spelling;

use std::path::Path;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use describe::{certificate_report, crl_report, csr_report};
pub use error::InspectError;
use heuristics::{CertificateFacts, add_bundle_warnings, add_key_pairing_warnings};
use oids::{describe_public_key, public_key_warnings};
use pem::{ObjectKind, split_objects};
pub use report::{
    BasicConstraintsReport, CertificateReport, CrlReport, CsrReport, Finding, KeyReport,
    RevokedEntry,
};

/// Inspects one file (PEM with any number of sections, or one DER object) at the current time.
pub fn inspect_file(path: &Path) -> Result<Vec<Finding>, InspectError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| InspectError::Read {
        path: name.clone(),
        source,
    })?;
    inspect_bytes(&name, &bytes, OffsetDateTime::now_utc())
}

/// Inspects the contents of a file named `name`, judging validity at `now` (fixed in tests).
pub fn inspect_bytes(
    name: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<Vec<Finding>, InspectError> {
    let objects = split_objects(name, bytes)?;
    if objects.is_empty() {
        return Err(InspectError::NothingFound {
            path: name.to_owned(),
        });
    }
    let mut findings = Vec::with_capacity(objects.len());
    let mut certificates = Vec::new();
    let mut private_keys = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let item = index + 1;
        let unparsable = |reason: String| InspectError::Unparsable {
            path: name.to_owned(),
            item,
            label: object.label.clone(),
            reason,
        };
        let finding = match object.kind {
            ObjectKind::Certificate => {
                let (_, cert) = X509Certificate::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                let report = certificate_report(name, item, &cert, &object.der, now);
                certificates.push(CertificateFacts::of(&cert, findings.len()));
                Finding::Certificate(report)
            }
            ObjectKind::Csr => {
                let (_, csr) = X509CertificationRequest::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::CertificateRequest(csr_report(name, item, &csr))
            }
            ObjectKind::Crl => {
                let (_, crl) = CertificateRevocationList::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::Crl(crl_report(name, item, &crl, now))
            }
            ObjectKind::PrivateKey(format) => {
                let report = keys::private_key_report(name, item, format, &object.der)
                    .map_err(unparsable)?;
                private_keys.push((findings.len(), format, object.der.as_slice()));
                Finding::PrivateKey(report)
            }
            ObjectKind::PublicKey => {
                let (_, spki) = SubjectPublicKeyInfo::from_der(&object.der)
                    .map_err(|error| unparsable(corrupt(error)))?;
                Finding::PublicKey(KeyReport {
                    file: name.to_owned(),
                    item,
                    format: "SubjectPublicKeyInfo".to_owned(),
                    encrypted: false,
                    key_type: Some(describe_public_key(&spki)),
                    warnings: public_key_warnings(&spki),
                })
            }
        };
        findings.push(finding);
    }
    add_bundle_warnings(name, &certificates, &mut findings);
    add_key_pairing_warnings(&certificates, &private_keys, &mut findings);
    Ok(findings)
}

/// A parser error phrased with the usual cause and fix.
fn corrupt(error: impl std::fmt::Display) -> String {
    format!("{error}; check that the file is complete and not corrupted")
}

/// Encodes findings as one pretty-printed JSON array for `--json`.
pub fn findings_to_json(findings: &[Finding]) -> Result<String, InspectError> {
    Ok(serde_json::to_string_pretty(findings)?)
}

/// Renders findings for a person: one block per item, warnings last in each block.
pub fn findings_to_text(findings: &[Finding]) -> String {
    render::text(findings)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SerialNumber,
    };

    use super::heuristics::file_named_like_ca;
    use super::*;

    /// A UTC instant; tests fix time so that days-left arithmetic is exact.
    fn at(year: i32, month: u8, day: u8, hour: u8) -> OffsetDateTime {
        let month = time::Month::try_from(month).unwrap();
        time::Date::from_calendar_date(year, month, day)
            .unwrap()
            .with_hms(hour, 0, 0)
            .unwrap()
            .assume_utc()
    }

    fn now() -> OffsetDateTime {
        at(2030, 6, 15, 12)
    }

    fn ca() -> (CertificateParams, KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Unit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_before = at(2030, 1, 1, 0);
        params.not_after = at(2031, 1, 1, 0);
        let pem = params.self_signed(&key).unwrap().pem();
        (params, key, pem)
    }

    fn leaf(
        issuer: &Issuer<'_, &KeyPair>,
        cn: &str,
        eku: Vec<ExtendedKeyUsagePurpose>,
        not_after: OffsetDateTime,
    ) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![format!("{cn}.test")]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = eku;
        params.not_before = at(2030, 1, 1, 0);
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x9A, 0x01]));
        params.signed_by(&key, issuer).unwrap().pem()
    }

    fn certificate(finding: &Finding) -> &CertificateReport {
        match finding {
            Finding::Certificate(report) => report,
            other => panic!("expected a certificate, got {other:?}"),
        }
    }

    #[test]
    fn days_left_and_expiry_are_judged_at_the_given_time() {
        let (params, key, ca_pem) = ca();
        let issuer = Issuer::from_params(&params, &key);
        let expired = leaf(
            &issuer,
            "old",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            at(2030, 6, 5, 12),
        );
        let findings = inspect_bytes("ca.pem", ca_pem.as_bytes(), now()).unwrap();
        let ca_report = certificate(&findings[0]);
        assert_eq!(ca_report.days_left, 199);
        assert_eq!(
            ca_report.basic_constraints.as_ref().unwrap().path_len,
            Some(0)
        );
        assert!(ca_report.warnings.is_empty(), "{:?}", ca_report.warnings);

        let findings = inspect_bytes("old.pem", expired.as_bytes(), now()).unwrap();
        let report = certificate(&findings[0]);
        assert_eq!(report.days_left, -10);
        assert_eq!(
            report.serial, "9A01",
            "the DER sign byte is not part of the serial"
        );
        assert!(report.warnings[0].starts_with("expired on 2030-06-05T12:00:00Z (10 days ago)"));
    }

    #[test]
    fn several_issuers_after_a_leaf_form_a_chain_but_two_leaves_do_not() {
        let (params, key, ca_pem) = ca();
        let issuer = Issuer::from_params(&params, &key);
        let far = at(2031, 1, 1, 0);
        let first = leaf(
            &issuer,
            "one",
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            far,
        );
        let second = leaf(
            &issuer,
            "two",
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            far,
        );

        let chain = format!("{first}{ca_pem}");
        let findings = inspect_bytes("fullchain.pem", chain.as_bytes(), now()).unwrap();
        assert!(findings.iter().all(|finding| finding.warnings().is_empty()));

        let two_leaves = format!("{first}{second}");
        let findings = inspect_bytes("certs.pem", two_leaves.as_bytes(), now()).unwrap();
        for (index, finding) in findings.iter().enumerate() {
            let warning = &finding.warnings()[0];
            assert!(
                warning.starts_with(&format!("certificate #{} (CN=", index + 1)),
                "{warning}"
            );
        }
    }

    #[test]
    fn ca_file_names_are_recognised_by_their_words() {
        for name in [
            "ca.pem",
            "cas.pem",
            "dir/root-ca.crt",
            "cacert.pem",
            "my_ca.crt",
            "ROOT.pem",
        ] {
            assert!(file_named_like_ca(name), "{name}");
        }
        for name in [
            "client.crt",
            "cart.pem",
            "local.pem",
            "fullchain.pem",
            "dir.ca/leaf.pem",
        ] {
            assert!(!file_named_like_ca(name), "{name}");
        }
    }

    #[test]
    fn json_has_a_kind_field_per_item() {
        let (_, _, ca_pem) = ca();
        let findings = inspect_bytes("ca.pem", ca_pem.as_bytes(), now()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&findings_to_json(&findings).unwrap()).unwrap();
        assert_eq!(json[0]["kind"], "certificate");
        assert_eq!(json[0]["subject"], "CN=Unit CA");
    }
}
