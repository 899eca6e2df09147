//! Whole-file checks: non-CA certificates in a CA bundle, and a key that fits none of the certificates beside it.

use std::path::Path;

use x509_parser::certificate::X509Certificate;

use super::keys;
use super::report::Finding;
use super::spelling::short_name;

/// In a combined file (certificate and key, as `curl --cert` takes it), flags a key that belongs
/// to none of the certificates beside it.
pub(super) fn add_key_pairing_warnings(
    certificates: &[CertificateFacts],
    private_keys: &[(usize, keys::PrivateKeyFormat, &[u8])],
    findings: &mut [Finding],
) {
    if certificates.is_empty() {
        return;
    }
    for (finding_index, format, der) in private_keys {
        // Encrypted keys cannot be compared without their passphrase.
        let Some(public_key) = keys::public_key_of(*format, der) else {
            continue;
        };
        if certificates
            .iter()
            .any(|facts| facts.public_key_bits == public_key)
        {
            continue;
        }
        let names: Vec<&str> = certificates
            .iter()
            .map(|facts| facts.common_name.as_str())
            .collect();
        if let Some(Finding::PrivateKey(report)) = findings.get_mut(*finding_index) {
            report.warnings.push(format!(
                "this key does not belong to the certificate(s) in the same file ({}): TLS clients using this file (curl --cert) fail the handshake; pair the certificate with its own key",
                names.join(", ")
            ));
        }
    }
}

/// The facts about each certificate in a file that whole-file checks need.
pub(super) struct CertificateFacts {
    pub(super) finding_index: usize,
    pub(super) is_ca: bool,
    pub(super) subject_raw: Vec<u8>,
    pub(super) issuer_raw: Vec<u8>,
    pub(super) common_name: String,
    pub(super) version: u32,
    pub(super) has_basic_constraints: bool,
    pub(super) public_key_bits: Vec<u8>,
}

impl CertificateFacts {
    pub(super) fn of(cert: &X509Certificate<'_>, finding_index: usize) -> Self {
        let basic_constraints = cert.basic_constraints().ok().flatten();
        Self {
            finding_index,
            is_ca: basic_constraints.as_ref().is_some_and(|bc| bc.value.ca),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            common_name: short_name(&cert.subject().to_string()),
            version: cert.version().0 + 1,
            has_basic_constraints: basic_constraints.is_some(),
            public_key_bits: cert.public_key().subject_public_key.data.to_vec(),
        }
    }
}

/// Flags non-CA certificates in a file that is used as a CA bundle.
///
/// A file is taken for a CA bundle when its name says so (`ca.pem`, `cas.pem`, `root-ca.crt`,
/// `cacert.pem`, ...) or when it holds several certificates that are not simply a leaf followed
/// by its own issuers (the usual `fullchain.pem`, which is fine).
pub(super) fn add_bundle_warnings(
    name: &str,
    certificates: &[CertificateFacts],
    findings: &mut [Finding],
) {
    let named_like_ca = file_named_like_ca(name);
    let several = certificates.len() > 1;
    if !named_like_ca && (!several || is_leaf_then_issuers(certificates)) {
        return;
    }
    let count = certificates.len();
    for (position, facts) in certificates.iter().enumerate() {
        if facts.is_ca {
            continue;
        }
        let cause = if facts.version < 3 {
            "X.509 v1, so no basicConstraints".to_owned()
        } else if facts.has_basic_constraints {
            "basicConstraints cA=false".to_owned()
        } else {
            "no basicConstraints extension".to_owned()
        };
        let context = if several {
            format!("this file holds {count} certificates like a CA bundle")
        } else {
            "this file is named like a CA file".to_owned()
        };
        let warning = format!(
            "certificate #{} ({}) is not a CA ({cause}) but {context}; a gateway refuses it as a CA (RFC 5280 4.2.1.9); remove it from the bundle or use a CA certificate",
            position + 1,
            facts.common_name,
        );
        if let Some(Finding::Certificate(report)) = findings.get_mut(facts.finding_index) {
            report.warnings.push(warning);
        }
    }
}

/// Whether the file name has a word such as `ca`, `cacert` or `root`, as CA bundles do.
pub(super) fn file_named_like_ca(name: &str) -> bool {
    let stem = Path::new(name)
        .file_name()
        .map(|file| file.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|token| {
            matches!(
                token,
                "ca" | "cas" | "cacert" | "cacerts" | "root" | "roots"
            )
        })
}

/// True for `leaf, its issuer, that one's issuer, ...` where only the leaf is not a CA.
pub(super) fn is_leaf_then_issuers(certificates: &[CertificateFacts]) -> bool {
    let Some((leaf, issuers)) = certificates.split_first() else {
        return false;
    };
    !leaf.is_ca
        && issuers.iter().all(|facts| facts.is_ca)
        && certificates
            .windows(2)
            .all(|pair| pair[0].issuer_raw == pair[1].subject_raw)
}
