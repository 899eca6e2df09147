//! One report per parsed certificate, CSR or CRL, with the warnings that item earns on its own.

use std::path::Path;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::revocation_list::CertificateRevocationList;

use super::oids::{
    describe_algorithm, describe_public_key, extended_key_usage_names, key_usage_names,
    public_key_warnings, reason_name,
};
use super::report::{
    BasicConstraintsReport, CertificateReport, CrlReport, CsrReport, RevokedEntry,
};
use super::spelling::{
    asn1_rfc3339, describe_general_name, rfc3339, serial_hex, sha256_fingerprint,
};

/// A certificate's report, with validity judged at `now`.
pub(super) fn certificate_report(
    name: &str,
    item: usize,
    cert: &X509Certificate<'_>,
    der: &[u8],
    now: OffsetDateTime,
) -> CertificateReport {
    let version = cert.version().0 + 1;
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let days_left = (not_after - now).whole_days();

    let subject_alt_names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(describe_general_name)
                .collect()
        })
        .unwrap_or_default();
    let key_usage = cert
        .key_usage()
        .ok()
        .flatten()
        .map(|ku| key_usage_names(ku.value.flags));
    let eku = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| eku.value.clone());
    let extended_key_usage = eku.as_ref().map(extended_key_usage_names);
    let basic_constraints =
        cert.basic_constraints()
            .ok()
            .flatten()
            .map(|bc| BasicConstraintsReport {
                ca: bc.value.ca,
                path_len: bc.value.path_len_constraint,
                critical: bc.critical,
            });
    let is_ca = basic_constraints.as_ref().is_some_and(|bc| bc.ca);

    let mut warnings = Vec::new();
    if now < not_before {
        warnings.push(format!(
            "not yet valid: valid from {} ({} days from now); a gateway refuses it until then",
            rfc3339(not_before),
            (not_before - now).whole_days()
        ));
    }
    if now > not_after {
        warnings.push(format!(
            "expired on {} ({} days ago); a gateway refuses it with certificate_expired; issue a new one",
            rfc3339(not_after),
            (now - not_after).whole_days()
        ));
    }
    if version < 3 {
        warnings.push(
            "X.509 version 1: no extensions (no SANs, key usage or basicConstraints); it cannot be a CA or a server certificate, and many TLS stacks refuse it as a client certificate (moat accepts it only when a configured CA signed it directly); reissue with an extension file (openssl x509 -req -extfile) or with moat pki"
                .to_owned(),
        );
    }
    if is_ca {
        if let Some(names) = &key_usage
            && !names.iter().any(|usage| usage == "keyCertSign")
        {
            warnings.push(
                "a CA whose keyUsage lacks keyCertSign: verifiers refuse the certificates it signs"
                    .to_owned(),
            );
        }
    } else if let Some(eku) = &eku {
        let client_named = Path::new(name)
            .file_name()
            .is_some_and(|file| file.to_string_lossy().to_lowercase().contains("client"));
        if !eku.client_auth && !eku.any && (!eku.server_auth || client_named) {
            warnings.push(format!(
                "extendedKeyUsage ({}) has no clientAuth: a gateway refuses it as a client certificate; issue it with the client profile",
                extended_key_usage_names(eku).join(", ")
            ));
        }
        if eku.server_auth && subject_alt_names.is_empty() {
            warnings.push(
                "a server certificate without subjectAltName: clients ignore the CN and refuse it for any hostname; reissue it with a subjectAltName such as dns:NAME"
                    .to_owned(),
            );
        }
    }
    warnings.extend(public_key_warnings(cert.public_key()));

    CertificateReport {
        file: name.to_owned(),
        item,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        version,
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        days_left,
        public_key: describe_public_key(cert.public_key()),
        signature_algorithm: describe_algorithm(&cert.signature_algorithm),
        subject_alt_names,
        key_usage,
        extended_key_usage,
        basic_constraints,
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        sha256_fingerprint: sha256_fingerprint(der),
        warnings,
    }
}

/// A CSR's report; its self-signature is checked.
pub(super) fn csr_report(name: &str, item: usize, csr: &X509CertificationRequest<'_>) -> CsrReport {
    let info = &csr.certification_request_info;
    let requested_subject_alt_names = csr
        .requested_extensions()
        .map(|extensions| {
            extensions
                .filter_map(|extension| match extension {
                    ParsedExtension::SubjectAlternativeName(san) => Some(
                        san.general_names
                            .iter()
                            .map(describe_general_name)
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    let signature_valid = csr.verify_signature().is_ok();
    let mut warnings = Vec::new();
    if !signature_valid {
        warnings.push(
            "the CSR's signature does not verify with its own public key (altered or corrupted); a CA, moat pki sign included, refuses to sign it; make a new CSR"
                .to_owned(),
        );
    }
    warnings.extend(public_key_warnings(&info.subject_pki));
    CsrReport {
        file: name.to_owned(),
        item,
        subject: info.subject.to_string(),
        public_key: describe_public_key(&info.subject_pki),
        signature_algorithm: describe_algorithm(&csr.signature_algorithm),
        requested_subject_alt_names,
        signature_valid,
        warnings,
    }
}

/// A CRL's report, stale when `now` is past its nextUpdate.
pub(super) fn crl_report(
    name: &str,
    item: usize,
    crl: &CertificateRevocationList<'_>,
    now: OffsetDateTime,
) -> CrlReport {
    let next_update = crl.next_update().map(|time| time.to_datetime());
    let mut warnings = Vec::new();
    if let Some(next) = next_update
        && now > next
    {
        warnings.push(format!(
            "stale: its nextUpdate was {} ({} days ago); gateways that enforce CRL freshness refuse every certificate of this CA; publish a new CRL",
            rfc3339(next),
            (now - next).whole_days()
        ));
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedEntry {
            serial: serial_hex(entry.raw_serial()),
            revoked_at: asn1_rfc3339(entry.revocation_date),
            reason: entry.reason_code().map(|(_, code)| reason_name(code.0)),
        })
        .collect();
    CrlReport {
        file: name.to_owned(),
        item,
        issuer: crl.issuer().to_string(),
        version: crl.version().map_or(1, |version| version.0 + 1),
        this_update: asn1_rfc3339(crl.last_update()),
        next_update: next_update.map(rfc3339),
        crl_number: crl.crl_number().map(ToString::to_string),
        signature_algorithm: describe_algorithm(&crl.signature_algorithm),
        revoked,
        warnings,
    }
}
