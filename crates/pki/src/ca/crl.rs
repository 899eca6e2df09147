//! Signing certificate revocation lists, numbered through the ledger.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};

use super::authority::{BACKDATE, CertificateAuthority};
use super::options::{CrlOptions, SignedCrl};
use crate::PkiError;
use crate::ledger::Ledger;
use crate::serial::Serial;

impl CertificateAuthority {
    /// Signs a CRL listing the ledger's revocations plus `options.extra_serials`, with the next
    /// CRL number (kept in the ledger, which stays locked until the number is saved). A CA
    /// without a ledger numbers CRLs by the current Unix time, which also only grows.
    pub fn crl(&self, options: &CrlOptions) -> Result<SignedCrl, PkiError> {
        self.publish_crl(options, |_| Ok(()))
    }

    /// Like [`Self::crl`], and runs `publish` (writing the CRL file) before the ledger lock is
    /// released: parallel runs publish in CRL-number order, so an older CRL, perhaps without
    /// the latest revocation, never replaces a newer one. When `publish` fails the CRL number is
    /// not used up.
    pub fn publish_crl(
        &self,
        options: &CrlOptions,
        publish: impl FnOnce(&SignedCrl) -> Result<(), PkiError>,
    ) -> Result<SignedCrl, PkiError> {
        if options.validity <= Duration::ZERO {
            return Err(PkiError::NoValidity {
                problem: "a CRL needs a positive lifetime",
            });
        }
        match &self.dir {
            Some(dir) => Ledger::update(dir, |ledger| {
                let number = ledger.crl_number + 1;
                let signed = self.sign_crl(options, ledger, number)?;
                publish(&signed)?;
                ledger.crl_number = number;
                Ok(signed)
            }),
            None => {
                let number = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(1);
                let signed = self.sign_crl(options, &Ledger::default(), number)?;
                publish(&signed)?;
                Ok(signed)
            }
        }
    }

    fn sign_crl(
        &self,
        options: &CrlOptions,
        ledger: &Ledger,
        number: u64,
    ) -> Result<SignedCrl, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut revoked: Vec<RevokedCertParams> = Vec::new();
        let mut listed: std::collections::BTreeSet<Serial> = std::collections::BTreeSet::new();
        for (entry, revocation) in ledger.revoked() {
            if listed.insert(entry.serial.clone()) {
                let at = OffsetDateTime::parse(
                    &revocation.at,
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap_or(now);
                revoked.push(RevokedCertParams {
                    serial_number: serial_number(&entry.serial),
                    revocation_time: at,
                    reason_code: Some(revocation.reason.to_rcgen()),
                    invalidity_date: None,
                });
            }
        }
        for serial in &options.extra_serials {
            if listed.insert(serial.clone()) {
                revoked.push(RevokedCertParams {
                    serial_number: serial_number(serial),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                });
            }
        }
        let revoked_count = revoked.len();
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + options.validity,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: self.key_identifier_method(),
        };
        let issuer = self.issuer()?;
        let crl = params.signed_by(&issuer).map_err(|error| PkiError::Build {
            what: "CRL",
            reason: error.to_string(),
        })?;
        let pem = crl.pem().map_err(|error| PkiError::Build {
            what: "CRL",
            reason: error.to_string(),
        })?;
        Ok(SignedCrl {
            pem,
            der: crl.der().to_vec(),
            number,
            revoked_count,
        })
    }

    /// The CRL's authority key identifier must equal the CA's subject key identifier.
    fn key_identifier_method(&self) -> KeyIdMethod {
        x509_parser::parse_x509_certificate(&self.certificate_der)
            .ok()
            .and_then(|(_, parsed)| {
                parsed
                    .iter_extensions()
                    .find_map(|extension| match extension.parsed_extension() {
                        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                            Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                        }
                        _ => None,
                    })
            })
            .unwrap_or(KeyIdMethod::Sha256)
    }
}

/// A serial as the CRL encodes it: its magnitude, and a single zero byte for zero.
fn serial_number(serial: &Serial) -> SerialNumber {
    match serial.as_bytes() {
        [] => SerialNumber::from_slice(&[0]),
        bytes => SerialNumber::from_slice(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CaOptions;
    use crate::ledger::{self, LOCK_FILE, LedgerLock};

    fn one_day() -> CrlOptions {
        CrlOptions {
            validity: Duration::days(1),
            extra_serials: Vec::new(),
        }
    }

    #[test]
    fn a_crl_is_published_while_the_ledger_is_locked_and_a_failed_publish_keeps_the_number() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca = CertificateAuthority::init(dir.path(), &CaOptions::default()).expect("init");
        let signed = ca
            .publish_crl(&one_day(), |_| {
                // Another command's turn may not start before this CRL is written.
                match LedgerLock::acquire(dir.path(), std::time::Duration::ZERO) {
                    Err(PkiError::LedgerLocked { path, .. }) => {
                        assert_eq!(path, dir.path().join(LOCK_FILE));
                        Ok(())
                    }
                    other => panic!("the ledger lock is free while publishing: {other:?}"),
                }
            })
            .expect("publish");
        assert_eq!(signed.number, 1);

        let failed = ca.publish_crl(&one_day(), |_| {
            Err(PkiError::InvalidRequest("disk full".to_owned()))
        });
        assert!(
            matches!(failed, Err(PkiError::InvalidRequest(_))),
            "{failed:?}"
        );
        let ledger = Ledger::load(&ledger::ledger_path(dir.path())).expect("ledger");
        assert_eq!(ledger.crl_number, 1, "the failed publish used up no number");
        assert_eq!(ca.crl(&one_day()).expect("crl").number, 2);
    }
}
