//! Certificate serial numbers and SHA-256 fingerprints: one parse and one spelling for each.
//!
//! People paste a serial as openssl prints it (`0A:1B`), as a ledger or cfssl holds it (`a1b`)
//! or with `0x`; a certificate holds it as a DER integer, sign-padded with a zero byte. Every one
//! of these is one [`Serial`], compared by value. Its [`Display`](std::fmt::Display) is moat's
//! documented spelling (audit events, logs, `Moat-Client-Serial`); the two other spellings moat
//! prints are kept on purpose and named for where they appear: [`Serial::to_openssl_hex`] (what
//! `openssl x509 -serial` prints, for `moat pki inspect`) and [`Serial::to_ledger_hex`] (the form
//! `ledger.json` has always stored, so existing CA directories keep reading the same).

use std::fmt;

/// A certificate serial number, kept as its magnitude so that every spelling of one serial is one
/// value and compares equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial {
    /// Big-endian magnitude without leading zero bytes; empty for zero.
    magnitude: Vec<u8>,
}

impl Serial {
    /// The serial of a certificate or CRL entry, from the DER integer's content bytes.
    pub fn from_der(raw: &[u8]) -> Serial {
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Serial {
            magnitude: raw[start..].to_vec(),
        }
    }

    /// Reads a serial as people write it: hex digits in any case, with or without `0x`, colons,
    /// spaces and leading zeros. `None` if it is not a hexadecimal number.
    pub fn parse(text: &str) -> Option<Serial> {
        let trimmed = text.trim();
        let without_prefix = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = without_prefix
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        let padded = if significant.len() % 2 == 1 {
            format!("0{significant}")
        } else {
            significant.to_owned()
        };
        hex::decode(padded)
            .ok()
            .map(|bytes| Serial::from_der(&bytes))
    }

    /// The magnitude, big-endian, without leading zero bytes (empty for zero): what CRLs compare.
    pub fn as_bytes(&self) -> &[u8] {
        &self.magnitude
    }

    /// Upper-case hex in whole bytes (`0A1B`, `00` for zero), as `openssl x509 -serial` prints it,
    /// so `moat pki inspect` and openssl agree on a file.
    pub fn to_openssl_hex(&self) -> String {
        if self.magnitude.is_empty() {
            return "00".to_owned();
        }
        hex::encode_upper(&self.magnitude)
    }

    /// Lower-case hex without leading zero digits (`a1b`, `0` for zero): the form `ledger.json`
    /// stores and `moat pki revoke` reports, kept so existing ledgers read the same.
    pub fn to_ledger_hex(&self) -> String {
        let text = hex::encode(&self.magnitude);
        let trimmed = text.trim_start_matches('0');
        if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        }
    }
}

/// Lower-case hex in whole bytes (`0a1b`, `00` for zero): the spelling of audit events, logs
/// and the `Moat-Client-Serial` header.
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.magnitude.is_empty() {
            return f.write_str("00");
        }
        for byte in &self.magnitude {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The SHA-256 digest of a certificate's DER encoding, the fingerprint rules and headers name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Reads a fingerprint as openssl prints it or as moat does: 64 hex digits in any case,
    /// colons and spaces allowed. `None` otherwise.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let digits: String = text
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        let mut bytes = [0; 32];
        hex::decode_to_slice(digits, &mut bytes).ok()?;
        Some(Fingerprint(bytes))
    }

    /// Upper-case hex bytes joined by colons, as `openssl x509 -fingerprint -sha256` prints it.
    pub fn to_openssl_hex(&self) -> String {
        self.0
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// 64 lower-case hex digits without separators: the spelling of audit events and the
/// `Moat-Client-Fingerprint-Sha256` header.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moat's spelling, openssl's and the ledger's, in that order.
    type Spellings<'a> = (&'a str, &'a str, &'a str);

    #[test]
    fn every_spelling_of_a_serial_is_one_value() {
        // (as written, its spellings); None when it must not parse.
        let table: &[(&str, Option<Spellings>)] = &[
            ("0a1b", Some(("0a1b", "0A1B", "a1b"))),
            ("0A:1B", Some(("0a1b", "0A1B", "a1b"))),
            ("00:0A:1b", Some(("0a1b", "0A1B", "a1b"))),
            ("0x0a1B", Some(("0a1b", "0A1B", "a1b"))),
            ("0XA1B", Some(("0a1b", "0A1B", "a1b"))),
            ("a1b", Some(("0a1b", "0A1B", "a1b"))),
            (" 0a 1b ", Some(("0a1b", "0A1B", "a1b"))),
            ("bad", Some(("0bad", "0BAD", "bad"))),
            ("0", Some(("00", "00", "0"))),
            ("00:00", Some(("00", "00", "0"))),
            ("8f", Some(("8f", "8F", "8f"))),
            ("", None),
            (":", None),
            ("0x", None),
            ("zz", None),
            ("12-34", None),
        ];
        for (text, expected) in table {
            let serial = Serial::parse(text);
            let spelled = serial.as_ref().map(|serial| {
                (
                    serial.to_string(),
                    serial.to_openssl_hex(),
                    serial.to_ledger_hex(),
                )
            });
            let expected = expected.map(|(moat, openssl, ledger)| {
                (moat.to_owned(), openssl.to_owned(), ledger.to_owned())
            });
            assert_eq!(spelled, expected, "{text:?}");
        }
    }

    #[test]
    fn a_der_serial_loses_its_sign_padding() {
        // (DER content bytes, moat's spelling)
        let table: &[(&[u8], &str)] = &[
            (&[0x00, 0x8f], "8f"),
            (&[0x0a, 0x1b], "0a1b"),
            (&[0x00], "00"),
            (&[], "00"),
            (&[0x00, 0x00, 0x01], "01"),
        ];
        for (raw, spelled) in table {
            let serial = Serial::from_der(raw);
            assert_eq!(serial.to_string(), *spelled, "{raw:?}");
            assert_eq!(Serial::parse(spelled), Some(serial), "{raw:?}");
        }
        assert_eq!(Serial::from_der(&[0x00, 0x8f]).as_bytes(), &[0x8f]);
    }

    #[test]
    fn a_fingerprint_reads_both_spellings_and_prints_each() {
        let fingerprint = Fingerprint::of_der(b"certificate");
        let moat = fingerprint.to_string();
        let openssl = fingerprint.to_openssl_hex();
        assert_eq!(moat.len(), 64);
        assert_eq!(openssl.len(), 64 + 31);
        assert_eq!(openssl.replace(':', "").to_ascii_lowercase(), moat);
        // (as written, parses)
        let table: &[(&str, bool)] = &[
            (&moat, true),
            (&openssl, true),
            (&moat.to_ascii_uppercase(), true),
            (&moat[..62], false),
            (&format!("{moat}00"), false),
            (&moat.replace(|c: char| c.is_ascii_digit(), "g"), false),
            ("", false),
        ];
        for (text, parses) in table {
            let parsed = Fingerprint::parse(text);
            assert_eq!(parsed.is_some(), *parses, "{text:?}");
            if *parses {
                assert_eq!(parsed, Some(fingerprint), "{text:?}");
            }
        }
    }
}
