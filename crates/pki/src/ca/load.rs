//! Opening an existing CA (a moat CA directory or another tool's files) and checking it may issue.

use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::authority::{CA_CERT_FILE, CA_KEY_FILE, CHAIN_FILE, CertificateAuthority};
use crate::PkiError;
use crate::keys;
use crate::ledger::{self, Ledger};

impl CertificateAuthority {
    /// Opens a CA directory made by `init-ca`; `passphrase` decrypts an encrypted `ca.key`.
    pub fn open(dir: &Path, passphrase: Option<&str>) -> Result<CertificateAuthority, PkiError> {
        for missing in [CA_CERT_FILE, CA_KEY_FILE, ledger::LEDGER_FILE] {
            if !dir.join(missing).is_file() {
                return Err(PkiError::NotACaDirectory {
                    dir: dir.to_path_buf(),
                    missing,
                });
            }
        }
        let cert_path = dir.join(CA_CERT_FILE);
        let certificate = read_first_certificate(&cert_path)?;
        let key = keys::load_private_key(&dir.join(CA_KEY_FILE), passphrase)?;
        let chain_path = dir.join(CHAIN_FILE);
        let chain_pem = if chain_path.is_file() {
            String::from_utf8_lossy(&crate::files::read(&chain_path)?).into_owned()
        } else {
            String::new()
        };
        let authority = Self::from_parts(
            Some(dir.to_path_buf()),
            cert_path,
            certificate,
            key,
            chain_pem,
        )?;
        authority.check_key(&dir.join(CA_KEY_FILE))?;
        // Fail now, not after signing, when the ledger is damaged.
        Ledger::load(&ledger::ledger_path(dir))?;
        Ok(authority)
    }

    /// Uses a CA that moat did not make (openssl, cfssl): its certificate and key files. Such a
    /// CA has no ledger, so it can sign but not revoke; further certificates in `cert_path`
    /// that are not self-signed are sent as the chain.
    pub fn from_files(
        cert_path: &Path,
        key_path: &Path,
        passphrase: Option<&str>,
    ) -> Result<CertificateAuthority, PkiError> {
        let bytes = crate::files::read(cert_path)?;
        let certificates = parse_certificates(cert_path, &bytes)?;
        let mut certificates = certificates.into_iter();
        let certificate = certificates.next().ok_or_else(|| PkiError::NoCertificate {
            path: cert_path.to_path_buf(),
        })?;
        let mut chain_pem = String::new();
        for extra in certificates {
            let self_signed = x509_parser::parse_x509_certificate(&extra)
                .map(|(_, parsed)| parsed.subject() == parsed.issuer())
                .unwrap_or(true);
            if !self_signed {
                chain_pem.push_str(&pem_certificate(&extra));
            }
        }
        let key = keys::load_private_key(key_path, passphrase)?;
        let mut authority = Self::from_parts(
            None,
            cert_path.to_path_buf(),
            certificate,
            key,
            String::new(),
        )?;
        authority.check_key(key_path)?;
        // A self-signed CA is the trust anchor itself and is not sent in chains; an intermediate
        // is, followed by the intermediates after it in the file.
        if !authority.is_self_signed() {
            authority.chain_pem = format!("{}{}", authority.certificate_pem, chain_pem);
        }
        Ok(authority)
    }

    pub(super) fn from_parts(
        dir: Option<PathBuf>,
        cert_path: PathBuf,
        certificate_der: CertificateDer<'static>,
        key: KeyPair,
        chain_pem: String,
    ) -> Result<CertificateAuthority, PkiError> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&certificate_der).map_err(|error| {
                PkiError::BadCertificate {
                    path: cert_path.clone(),
                    reason: error.to_string(),
                }
            })?;
        let subject = parsed.subject().to_string();
        let fix = "pass a CA certificate (one made by `moat pki init-ca`, `openssl req -x509` or `cfssl gencert -initca`)";
        let constraints = parsed
            .basic_constraints()
            .map_err(|error| PkiError::BadCertificate {
                path: cert_path.clone(),
                reason: error.to_string(),
            })?;
        let path_len = match constraints {
            Some(extension) if extension.value.ca => extension.value.path_len_constraint,
            Some(_) => {
                return Err(PkiError::NotACa {
                    path: cert_path,
                    subject,
                    reason: "basicConstraints cA=false".to_owned(),
                    fix,
                });
            }
            None => {
                return Err(PkiError::NotACa {
                    path: cert_path,
                    subject,
                    reason: "no basicConstraints extension; an X.509 v1 or leaf certificate cannot issue (RFC 5280 4.2.1.9)".to_owned(),
                    fix,
                });
            }
        };
        if let Ok(Some(usage)) = parsed.key_usage()
            && !usage.value.key_cert_sign()
        {
            return Err(PkiError::NotACa {
                path: cert_path,
                subject,
                reason: "keyUsage lacks keyCertSign".to_owned(),
                fix,
            });
        }
        let not_after = parsed.validity().not_after.to_datetime();
        Ok(CertificateAuthority {
            dir,
            certificate_pem: pem_certificate(&certificate_der),
            cert_path,
            certificate_der,
            chain_pem,
            key,
            subject,
            not_after,
            path_len,
        })
    }

    fn check_key(&self, key_path: &Path) -> Result<(), PkiError> {
        if keys::matches_certificate(&self.key, &self.certificate_der) {
            Ok(())
        } else {
            Err(PkiError::KeyMismatch {
                cert_path: self.cert_path.clone(),
                key_path: key_path.to_path_buf(),
                subject: self.subject.clone(),
            })
        }
    }

    fn is_self_signed(&self) -> bool {
        x509_parser::parse_x509_certificate(&self.certificate_der)
            .map(|(_, parsed)| {
                parsed.subject() == parsed.issuer() && parsed.verify_signature(None).is_ok()
            })
            .unwrap_or(false)
    }
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn parse_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    if bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| PkiError::BadCertificate {
                path: path.to_path_buf(),
                reason: format!("invalid PEM: {error}"),
            })?;
        if certificates.is_empty() {
            return Err(PkiError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        Ok(certificates)
    } else if bytes.is_empty() {
        Err(PkiError::NoCertificate {
            path: path.to_path_buf(),
        })
    } else {
        Ok(vec![CertificateDer::from(bytes.to_vec())])
    }
}

/// The first certificate of a PEM or DER file.
pub fn read_first_certificate(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let bytes = crate::files::read(path)?;
    let certificate = parse_certificates(path, &bytes)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::NoCertificate {
            path: path.to_path_buf(),
        })?;
    x509_parser::parse_x509_certificate(&certificate).map_err(|error| {
        PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }
    })?;
    Ok(certificate)
}
