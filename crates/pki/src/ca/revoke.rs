//! The CA's side of the ledger: recording what it signed and marking certificates revoked.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::authority::CertificateAuthority;
use super::load::read_first_certificate;
use super::options::RevokeOutcome;
use crate::PkiError;
use crate::ledger::{self, Ledger, LedgerEntry, Revocation, RevocationReason};
use crate::serial::Serial;

impl CertificateAuthority {
    /// Adds a certificate this CA signed to its ledger (no-op for a CA without one).
    pub(super) fn record(
        &self,
        certificate: &CertificateDer<'_>,
        profile: &str,
    ) -> Result<(), PkiError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let (_, parsed) =
            x509_parser::parse_x509_certificate(certificate).map_err(|error| PkiError::Build {
                what: "ledger entry",
                reason: error.to_string(),
            })?;
        let entry = LedgerEntry {
            serial: Serial::from_der(parsed.raw_serial()),
            subject: parsed.subject().to_string(),
            profile: profile.to_owned(),
            issued_at: rfc3339(OffsetDateTime::now_utc()),
            not_after: rfc3339(parsed.validity().not_after.to_datetime()),
            revoked: None,
        };
        Ledger::update(dir, |ledger| {
            ledger.certificates.push(entry);
            Ok(())
        })
    }

    fn ledger_dir_or_error(&self, what: &'static str) -> Result<&Path, PkiError> {
        self.dir.as_deref().ok_or_else(|| PkiError::LedgerRequired {
            path: self.cert_path.clone(),
            what,
        })
    }

    /// Marks `serial` revoked in the ledger (read one as people write it with
    /// [`ledger::parse_serial`]). A serial this CA never issued is an
    /// error; revoking twice keeps the first date and reason.
    pub fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
    ) -> Result<RevokeOutcome, PkiError> {
        let dir = self.ledger_dir_or_error("revocation")?;
        Ledger::update(dir, |ledger| mark_revoked(ledger, dir, serial, reason))
    }

    /// Revokes the certificate in `cert_path` after checking this CA signed it; a certificate
    /// the ledger does not know (signed before the ledger existed) is added.
    pub fn revoke_certificate(
        &self,
        cert_path: &Path,
        reason: RevocationReason,
    ) -> Result<RevokeOutcome, PkiError> {
        let dir = self.ledger_dir_or_error("revocation")?;
        let certificate = read_first_certificate(cert_path)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).map_err(|error| {
            PkiError::BadCertificate {
                path: cert_path.to_path_buf(),
                reason: error.to_string(),
            }
        })?;
        let (_, ca) =
            x509_parser::parse_x509_certificate(&self.certificate_der).map_err(|error| {
                PkiError::BadCertificate {
                    path: self.cert_path.clone(),
                    reason: error.to_string(),
                }
            })?;
        if parsed.verify_signature(Some(ca.public_key())).is_err() {
            return Err(PkiError::NotIssuedByCa {
                path: cert_path.to_path_buf(),
                subject: parsed.subject().to_string(),
                issuer: parsed.issuer().to_string(),
                ca: self.subject.clone(),
            });
        }
        let serial = Serial::from_der(parsed.raw_serial());
        Ledger::update(dir, |ledger| {
            if ledger.find_mut(&serial).is_none() {
                ledger.certificates.push(LedgerEntry {
                    serial: serial.clone(),
                    subject: parsed.subject().to_string(),
                    profile: "unknown".to_owned(),
                    issued_at: rfc3339(parsed.validity().not_before.to_datetime()),
                    not_after: rfc3339(parsed.validity().not_after.to_datetime()),
                    revoked: None,
                });
            }
            mark_revoked(ledger, dir, &serial, reason)
        })
    }
}

/// Marks `serial` revoked in `ledger` unless it already is (the first date and reason stay).
fn mark_revoked(
    ledger: &mut Ledger,
    dir: &Path,
    serial: &Serial,
    reason: RevocationReason,
) -> Result<RevokeOutcome, PkiError> {
    let entry = ledger
        .find_mut(serial)
        .ok_or_else(|| PkiError::UnknownSerial {
            serial: serial.to_ledger_hex(),
            ledger: ledger::ledger_path(dir),
        })?;
    let newly_revoked = entry.revoked.is_none();
    if newly_revoked {
        entry.revoked = Some(Revocation {
            at: rfc3339(OffsetDateTime::now_utc()),
            reason,
        });
    }
    Ok(RevokeOutcome {
        entry: entry.clone(),
        newly_revoked,
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
