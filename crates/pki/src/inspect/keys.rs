//! Tells a key's type and size from its container, without ever exposing the key itself.

use x509_parser::asn1_rs::{Any, Class, FromDer, Oid, Tag};

use super::report::KeyReport;

/// rsaEncryption.
pub(super) const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// RSASSA-PSS keys.
pub(super) const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
/// id-ecPublicKey.
pub(super) const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// id-Ed25519.
pub(super) const OID_ED25519: &str = "1.3.101.112";
/// id-Ed448.
pub(super) const OID_ED448: &str = "1.3.101.113";

/// The container a private key arrived in, which decides how its type and size are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrivateKeyFormat {
    /// `BEGIN PRIVATE KEY`: PKCS#8 PrivateKeyInfo.
    Pkcs8,
    /// `BEGIN ENCRYPTED PRIVATE KEY`: its algorithm is hidden until decrypted.
    EncryptedPkcs8,
    /// `BEGIN RSA PRIVATE KEY`: PKCS#1 RSAPrivateKey.
    Pkcs1,
    /// `BEGIN EC PRIVATE KEY`: SEC1 ECPrivateKey.
    Sec1,
    /// `BEGIN RSA/EC PRIVATE KEY` with `Proc-Type: 4,ENCRYPTED`: OpenSSL's legacy encryption.
    LegacyEncryptedPem,
}

impl PrivateKeyFormat {
    fn name(self) -> &'static str {
        match self {
            PrivateKeyFormat::Pkcs8 => "PKCS#8",
            PrivateKeyFormat::EncryptedPkcs8 => "encrypted PKCS#8",
            PrivateKeyFormat::Pkcs1 => "PKCS#1",
            PrivateKeyFormat::Sec1 => "SEC1",
            PrivateKeyFormat::LegacyEncryptedPem => "legacy encrypted PEM",
        }
    }
}

/// Named curves by OID, in the NIST names people search for.
pub(super) fn curve_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.3.1.7" => "P-256".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => format!("curve {other}"),
    }
}

/// RSA below 2048 bits is refused by rustls-webpki and by current browsers.
pub(super) fn rsa_size_warning(bits: usize) -> Option<String> {
    (bits > 0 && bits < 2048).then(|| {
        format!("RSA {bits} is below 2048 bits: rustls and current browsers refuse such keys; use at least RSA 2048 or ECDSA P-256")
    })
}

/// Recognises a DER private key by trying each container, for files without PEM armour.
pub(super) fn detect_der_private_key(der: &[u8]) -> Option<PrivateKeyFormat> {
    if pkcs8::PrivateKeyInfo::try_from(der).is_ok() {
        Some(PrivateKeyFormat::Pkcs8)
    } else if pkcs8::EncryptedPrivateKeyInfo::try_from(der).is_ok() {
        Some(PrivateKeyFormat::EncryptedPkcs8)
    } else if rsa_modulus_bits(der).is_some() {
        Some(PrivateKeyFormat::Pkcs1)
    } else if sec1_curve(der).is_some() {
        Some(PrivateKeyFormat::Sec1)
    } else {
        None
    }
}

/// Reports a private key's format, type and size; the `Err` explains why it does not parse.
pub(super) fn private_key_report(
    file: &str,
    item: usize,
    format: PrivateKeyFormat,
    der: &[u8],
) -> Result<KeyReport, String> {
    let mut warnings = Vec::new();
    let (key_type, rsa_bits) = match format {
        PrivateKeyFormat::Pkcs8 => {
            let info = pkcs8::PrivateKeyInfo::try_from(der)
                .map_err(|error| format!("not a PKCS#8 PrivateKeyInfo ({error})"))?;
            pkcs8_key_type(&info)
        }
        PrivateKeyFormat::EncryptedPkcs8 => {
            pkcs8::EncryptedPrivateKeyInfo::try_from(der)
                .map_err(|error| format!("not a PKCS#8 EncryptedPrivateKeyInfo ({error})"))?;
            (None, None)
        }
        PrivateKeyFormat::Pkcs1 => {
            let bits = rsa_modulus_bits(der).ok_or("not a PKCS#1 RSAPrivateKey")?;
            (Some(format!("RSA {bits}")), Some(bits))
        }
        PrivateKeyFormat::Sec1 => {
            let curve = sec1_curve(der).ok_or("not a SEC1 ECPrivateKey")?;
            (Some(format!("ECDSA {curve}")), None)
        }
        PrivateKeyFormat::LegacyEncryptedPem => {
            warnings.push("OpenSSL's legacy PEM encryption (Proc-Type: 4,ENCRYPTED), which moat does not read; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.pk8`".to_owned());
            (None, None)
        }
    };
    warnings.extend(rsa_bits.and_then(rsa_size_warning));
    Ok(KeyReport {
        file: file.to_owned(),
        item,
        format: format.name().to_owned(),
        encrypted: matches!(
            format,
            PrivateKeyFormat::EncryptedPkcs8 | PrivateKeyFormat::LegacyEncryptedPem
        ),
        key_type,
        warnings,
    })
}

/// The raw public key (as in a certificate's subjectPublicKey) of an unencrypted private key, so a
/// key can be matched to a certificate; `None` when encrypted or not understood by the backend.
pub(super) fn public_key_of(format: PrivateKeyFormat, der: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::{
        PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    };
    let key = match format {
        PrivateKeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        PrivateKeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        PrivateKeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        PrivateKeyFormat::EncryptedPkcs8 | PrivateKeyFormat::LegacyEncryptedPem => return None,
    };
    let pair = rcgen::KeyPair::try_from(&key).ok()?;
    Some(pair.public_key_raw().to_vec())
}

fn pkcs8_key_type(info: &pkcs8::PrivateKeyInfo<'_>) -> (Option<String>, Option<usize>) {
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        OID_RSA | OID_RSA_PSS => {
            let bits = rsa_modulus_bits(info.private_key);
            (bits.map(|bits| format!("RSA {bits}")), bits)
        }
        OID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|curve| curve_name(&curve.to_string()))
                .ok()
                .or_else(|| sec1_curve(info.private_key));
            (curve.map(|curve| format!("ECDSA {curve}")), None)
        }
        OID_ED25519 => (Some("Ed25519".to_owned()), None),
        OID_ED448 => (Some("Ed448".to_owned()), None),
        other => (Some(format!("algorithm {other}")), None),
    }
}

/// The DER elements inside a SEQUENCE, or `None` when `der` is not exactly one SEQUENCE.
fn sequence_elements(der: &[u8]) -> Option<Vec<Any<'_>>> {
    let (rest, outer) = Any::from_der(der).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return None;
    }
    let mut elements = Vec::new();
    let mut input = outer.data;
    while !input.is_empty() {
        let (next, element) = Any::from_der(input).ok()?;
        elements.push(element);
        input = next;
    }
    Some(elements)
}

/// Size of a PKCS#1 RSAPrivateKey: the bit length of its modulus (the second INTEGER).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let elements = sequence_elements(der)?;
    // RSAPrivateKey has version, n, e, d, p, q, dP, dQ, qInv.
    if elements.len() < 9
        || elements
            .iter()
            .take(9)
            .any(|element| element.tag() != Tag::Integer)
    {
        return None;
    }
    let modulus = elements[1].data;
    let first = modulus.iter().position(|byte| *byte != 0)?;
    let leading_zero_bits = modulus[first].leading_zeros() as usize;
    Some((modulus.len() - first) * 8 - leading_zero_bits)
}

/// The curve of a SEC1 ECPrivateKey, from its `[0] parameters` or else from the scalar's length.
fn sec1_curve(der: &[u8]) -> Option<String> {
    let elements = sequence_elements(der)?;
    let (version, scalar) = (elements.first()?, elements.get(1)?);
    if version.tag() != Tag::Integer || scalar.tag() != Tag::OctetString {
        return None;
    }
    let named = elements
        .iter()
        .skip(2)
        .find(|element| element.class() == Class::ContextSpecific && element.tag() == Tag(0))
        .and_then(|parameters| Oid::from_der(parameters.data).ok())
        .map(|(_, oid)| curve_name(&oid.to_id_string()));
    named.or_else(|| match scalar.data.len() {
        32 => Some("P-256".to_owned()),
        48 => Some("P-384".to_owned()),
        65 | 66 => Some("P-521".to_owned()),
        _ => None,
    })
}
