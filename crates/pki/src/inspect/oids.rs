//! Names for the codes, bits and OIDs a certificate carries, spelled as RFC 5280 and openssl spell them.

use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::keys;

/// RFC 5280 5.3.1 CRLReason names.
pub(super) fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        other => return format!("reason code {other}"),
    }
    .to_owned()
}

/// Key usage bit names in RFC 5280 order, spelled as in the RFC.
pub(super) fn key_usage_names(flags: u16) -> Vec<String> {
    const NAMES: [&str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags >> bit & 1 == 1)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// Extended key usage names as openssl prints them, unknown OIDs in dotted form.
pub(super) fn extended_key_usage_names(
    eku: &x509_parser::extensions::ExtendedKeyUsage<'_>,
) -> Vec<String> {
    let mut names = Vec::new();
    for (present, name) in [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ] {
        if present {
            names.push(name.to_owned());
        }
    }
    names.extend(eku.other.iter().map(ToString::to_string));
    names
}

/// `RSA 2048`, `ECDSA P-256`, `Ed25519`: what matters when choosing or checking a key.
pub(super) fn describe_public_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        keys::OID_RSA | keys::OID_RSA_PSS => {
            let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
            format!("RSA {bits}")
        }
        keys::OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|curve| keys::curve_name(&curve.to_id_string()))
                .unwrap_or_else(|| "(unknown curve)".to_owned());
            format!("ECDSA {curve}")
        }
        keys::OID_ED25519 => "Ed25519".to_owned(),
        keys::OID_ED448 => "Ed448".to_owned(),
        _ => describe_algorithm(&spki.algorithm),
    }
}

/// Warnings about the key itself (an RSA key too small to be trusted).
pub(super) fn public_key_warnings(spki: &SubjectPublicKeyInfo<'_>) -> Vec<String> {
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid == keys::OID_RSA
        && let Ok(key) = spki.parsed()
    {
        return keys::rsa_size_warning(key.key_size()).into_iter().collect();
    }
    Vec::new()
}

/// An algorithm's short name from the OID registry, or its dotted OID when unknown.
pub(super) fn describe_algorithm(algorithm: &AlgorithmIdentifier<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    x509_parser::objects::oid2sn(&algorithm.algorithm, registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| algorithm.algorithm.to_id_string())
}
