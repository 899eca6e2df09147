//! Small X.509 helpers shared by the bundle, CRL, verifier and identity code: names, serials, signatures.

use moat_pki::Serial;
use rustls::crypto::WebPkiSupportedAlgorithms;
use x509_parser::asn1_rs::{Any, FromDer, ToDer};
use x509_parser::x509::X509Name;

/// Formats a distinguished name as RFC 4514 does (most specific RDN first, `,` between RDNs,
/// `+` inside a multi-valued RDN), the same text as `openssl x509 -nameopt RFC2253` prints.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type().to_id_string();
            match short_name(&oid) {
                Some(short) => out.push_str(short),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attribute_text(attribute.attr_value()) {
                Some(text) => escape_value(&text, &mut out),
                None => {
                    // RFC 4514 2.4: a value without a string form is `#` and its BER in hex.
                    out.push('#');
                    if let Ok(der) = attribute.attr_value().to_der_vec() {
                        out.push_str(&hex::encode(der));
                    }
                }
            }
        }
    }
    out
}

/// The string value of a directory attribute, for the string types certificates use.
pub(crate) fn attribute_text(value: &Any<'_>) -> Option<String> {
    use x509_parser::asn1_rs::Tag;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(value.data).ok().map(str::to_owned),
        // T61String is Latin-1 in practice (openssl writes it so).
        Tag::TeletexString => Some(value.data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = value
                .data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => value
            .data
            .chunks_exact(4)
            .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
            .collect(),
        _ => None,
    }
}

/// The RFC 4514 short names of the attribute types that appear in practice.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// Escapes an attribute value per RFC 4514 2.4.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

/// A serial number in moat's spelling (lowercase hex without leading zero bytes, `00` for
/// zero), as logs and headers show it.
pub(crate) fn serial_hex(raw_serial: &[u8]) -> String {
    Serial::from_der(raw_serial).to_string()
}

/// The parts of a SubjectPublicKeyInfo that signature algorithms are matched against.
pub(crate) struct PublicKey<'a> {
    /// Contents of the AlgorithmIdentifier SEQUENCE, comparable with
    /// `SignatureVerificationAlgorithm::public_key_alg_id`.
    pub(crate) algorithm: &'a [u8],
    /// The subjectPublicKey BIT STRING's bytes.
    pub(crate) key: &'a [u8],
}

/// Splits a DER SubjectPublicKeyInfo into its algorithm and key.
pub(crate) fn split_spki(spki_der: &[u8]) -> Option<PublicKey<'_>> {
    let (_, outer) = Any::from_der(spki_der).ok()?;
    let (rest, algorithm) = Any::from_der(outer.data).ok()?;
    let (_, bits) = Any::from_der(rest).ok()?;
    // The first content byte of a BIT STRING counts unused bits; keys always use whole bytes.
    let (&unused, key) = bits.data.split_first()?;
    (unused == 0).then_some(PublicKey {
        algorithm: algorithm.data,
        key,
    })
}

/// Why a signed object (certificate or CRL) did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureFailure {
    /// The DER is not `SEQUENCE { tbs, algorithm, BIT STRING }`.
    Malformed,
    /// No algorithm of the provider matches the signature algorithm and the signer's key type.
    UnsupportedAlgorithm,
    /// The signature does not verify with the signer's key.
    Invalid,
}

/// Verifies the signature of a signed X.509 structure (`Certificate` or `CertificateList`) with
/// the signer's public key, using the provider's algorithms (webpki's own rules: the signature
/// algorithm identifier and the key's algorithm must both match one supported algorithm).
pub(crate) fn verify_signed(
    signed_der: &[u8],
    signer: &PublicKey<'_>,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), SignatureFailure> {
    let (_, outer) = Any::from_der(signed_der).map_err(|_| SignatureFailure::Malformed)?;
    let body = outer.data;
    let (after_tbs, _) = Any::from_der(body).map_err(|_| SignatureFailure::Malformed)?;
    let tbs = &body[..body.len() - after_tbs.len()];
    let (after_algorithm, algorithm) =
        Any::from_der(after_tbs).map_err(|_| SignatureFailure::Malformed)?;
    let (_, signature) = Any::from_der(after_algorithm).map_err(|_| SignatureFailure::Malformed)?;
    let signature = match signature.data.split_first() {
        Some((0, bits)) => bits,
        _ => return Err(SignatureFailure::Malformed),
    };
    let mut matched = false;
    for candidate in algorithms.all {
        if candidate.signature_alg_id().as_ref() != algorithm.data
            || candidate.public_key_alg_id().as_ref() != signer.algorithm
        {
            continue;
        }
        matched = true;
        if candidate
            .verify_signature(signer.key, tbs, signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(if matched {
        SignatureFailure::Invalid
    } else {
        SignatureFailure::UnsupportedAlgorithm
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_drops_sign_padding_but_keeps_zero_visible() {
        assert_eq!(serial_hex(&[0x00, 0x8d, 0x01]), "8d01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
    }

    #[test]
    fn rfc4514_escapes_special_characters() {
        let mut out = String::new();
        escape_value(" a,b+c#", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c#");
        let mut out = String::new();
        escape_value("#x ", &mut out);
        assert_eq!(out, "\\#x\\ ");
    }
}
