//! Making a CA directory: a root CA, or an intermediate signed by an existing CA.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, KeyIdMethod, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::authority::{BACKDATE, CA_CERT_FILE, CA_KEY_FILE, CHAIN_FILE, CertificateAuthority};
use super::options::CaOptions;
use crate::PkiError;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile};
use crate::keys;
use crate::ledger::{self, Ledger};

impl CertificateAuthority {
    /// Makes a root CA in `dir`: `ca.crt`, `ca.key` (0600) and an empty ledger.
    pub fn init(dir: &Path, options: &CaOptions) -> Result<CertificateAuthority, PkiError> {
        Self::create(dir, options, None)
    }

    /// Makes an intermediate CA in `dir`, signed by this CA, with a path length constraint
    /// (0 unless `options.path_len` says otherwise). The intermediate is recorded in this CA's
    /// ledger and `dir/chain.crt` holds the certificates a leaf's chain needs.
    pub fn init_intermediate(
        &self,
        dir: &Path,
        options: &CaOptions,
    ) -> Result<CertificateAuthority, PkiError> {
        let wanted = u32::from(options.path_len.unwrap_or(0));
        if let Some(allowed) = self.path_len
            && (allowed == 0 || wanted >= allowed)
        {
            return Err(PkiError::PathLengthExceeded {
                path: self.cert_path.clone(),
                subject: self.subject.clone(),
                allowed,
                fix: if allowed == 0 {
                    "issue leaves from it, or make the intermediate from a CA above it".to_owned()
                } else {
                    format!("make the new CA with a path length below {allowed}")
                },
            });
        }
        Self::create(dir, options, Some(self))
    }

    fn create(
        dir: &Path,
        options: &CaOptions,
        parent: Option<&CertificateAuthority>,
    ) -> Result<CertificateAuthority, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let ledger_path = ledger::ledger_path(dir);
        if !options.overwrite {
            for path in [&cert_path, &key_path, &ledger_path] {
                if path.exists() {
                    return Err(PkiError::OutputExists { path: path.clone() });
                }
            }
        }
        if options.validity_days == 0 {
            return Err(PkiError::NoValidity {
                problem: "a CA needs a lifetime of at least one day",
            });
        }
        let distinguished_name = options.subject.to_distinguished_name()?;
        let key = keys::generate(options.key_type)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(i64::from(options.validity_days));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let path_len = match (parent, options.path_len) {
            (None, None) => None,
            (Some(_), None) => Some(0),
            (_, Some(length)) => Some(length),
        };
        params.is_ca = IsCa::Ca(match path_len {
            Some(length) => BasicConstraints::Constrained(length),
            None => BasicConstraints::Unconstrained,
        });
        let build_error = |error: rcgen::Error| PkiError::Build {
            what: "CA certificate",
            reason: error.to_string(),
        };
        let (certificate, chain_pem) = match parent {
            None => (
                params.self_signed(&key).map_err(build_error)?,
                String::new(),
            ),
            Some(parent) => {
                params.not_after = params.not_after.min(parent.not_after);
                params.use_authority_key_identifier_extension = true;
                let issuer = parent.issuer()?;
                let certificate = params.signed_by(&key, &issuer).map_err(build_error)?;
                let chain = format!("{}{}", certificate.pem(), parent.chain_pem);
                (certificate, chain)
            }
        };
        let key_pem = keys::private_key_pem(&key, options.passphrase.as_deref())?;
        let mut files = Vec::new();
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        files.push(PlannedFile {
            path: cert_path.clone(),
            bytes: certificate.pem().into_bytes(),
            mode: PUBLIC_MODE,
        });
        files.push(PlannedFile {
            path: key_path,
            bytes: key_pem.into_bytes(),
            mode: PRIVATE_MODE,
        });
        let mut ledger_json = serde_json::to_vec_pretty(&Ledger {
            version: 1,
            ..Ledger::default()
        })
        .map_err(|error| PkiError::Ledger {
            path: ledger_path.clone(),
            reason: error.to_string(),
        })?;
        ledger_json.push(b'\n');
        files.push(PlannedFile {
            path: ledger_path,
            bytes: ledger_json,
            mode: PUBLIC_MODE,
        });
        let chain_path = dir.join(CHAIN_FILE);
        if parent.is_some() {
            files.push(PlannedFile {
                path: chain_path,
                bytes: chain_pem.clone().into_bytes(),
                mode: PUBLIC_MODE,
            });
        } else if options.overwrite && chain_path.exists() {
            // A root replacing an intermediate must not leave the old chain behind.
            std::fs::remove_file(&chain_path).map_err(|source| PkiError::Write {
                path: chain_path.clone(),
                source,
            })?;
        }
        crate::files::write_set(&files, options.overwrite)?;
        let authority = Self::from_parts(
            Some(dir.to_path_buf()),
            dir.join(CA_CERT_FILE),
            certificate.der().clone(),
            key,
            chain_pem,
        )?;
        if let Some(parent) = parent {
            parent.record(&authority.certificate_der, "intermediate-ca")?;
        }
        Ok(authority)
    }
}

/// 16 random bytes: a serial no one can guess, never zero (RFC 5280 4.1.2.2).
pub(super) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Build {
        what: "serial number",
        reason: "the system random generator failed".to_owned(),
    })?;
    // Zero is not a valid serial (RFC 5280 4.1.2.2); the encoder keeps the rest positive.
    if bytes.iter().all(|byte| *byte == 0) {
        bytes[15] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}
