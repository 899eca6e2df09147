//! A certificate just signed and the set of files it is written to (`.crt`, `.key`, `.pem`, `.p12`).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::PkiError;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile};

/// A certificate just signed, with its key when the CA generated one.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
    /// The intermediate CA certificates that follow the leaf (empty when a root signed it), PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM, unencrypted; `None` for a signed CSR, whose key the
    /// requester keeps.
    pub key_pem: Option<String>,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Subject as OpenSSL prints it.
    pub subject: String,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The leaf, DER.
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for IssuedCertificate {
    // The key must never reach a log through a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("serial", &self.serial)
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .field("has_key", &self.key_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Which files [`IssuedCertificate::write`] makes besides `PREFIX.crt` and `PREFIX.key`.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace existing files.
    pub overwrite: bool,
    /// Also `PREFIX.pem`: certificate chain then key, for `curl --cert PREFIX.pem`.
    pub combined: bool,
    /// Also `PREFIX.p12` protected by this password, for browsers and keychains.
    pub p12_password: Option<String>,
    /// Encryption scheme of the `.p12`.
    pub p12_format: crate::p12::P12Format,
}

impl IssuedCertificate {
    /// What `PREFIX.crt` holds: the leaf, then the intermediates.
    pub fn certificate_file_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// The paths [`IssuedCertificate::write`] would write, so callers can refuse existing ones
    /// before a CA records anything.
    pub fn output_paths(prefix: &Path, options: &WriteOptions, with_key: bool) -> Vec<PathBuf> {
        let mut paths = vec![with_extension(prefix, "crt")];
        if with_key {
            paths.push(with_extension(prefix, "key"));
            if options.combined {
                paths.push(with_extension(prefix, "pem"));
            }
            if options.p12_password.is_some() {
                paths.push(with_extension(prefix, "p12"));
            }
        }
        paths
    }

    /// Writes `PREFIX.crt`, `PREFIX.key` (0600) and, as asked, `PREFIX.pem` (0600) and
    /// `PREFIX.p12` (0600): all of them or none. Returns the paths written.
    pub fn write(&self, prefix: &Path, options: &WriteOptions) -> Result<Vec<PathBuf>, PkiError> {
        let chain = self.certificate_file_pem();
        let mut files = vec![PlannedFile {
            path: with_extension(prefix, "crt"),
            bytes: chain.clone().into_bytes(),
            mode: PUBLIC_MODE,
        }];
        if let Some(key_pem) = &self.key_pem {
            files.push(PlannedFile {
                path: with_extension(prefix, "key"),
                bytes: key_pem.clone().into_bytes(),
                mode: PRIVATE_MODE,
            });
            if options.combined {
                files.push(PlannedFile {
                    path: with_extension(prefix, "pem"),
                    bytes: format!("{chain}{key_pem}").into_bytes(),
                    mode: PRIVATE_MODE,
                });
            }
            if let Some(password) = &options.p12_password {
                let input = crate::p12::P12Input::from_bytes(
                    ("issued certificate", chain.as_bytes()),
                    ("issued key", key_pem.as_bytes()),
                    None,
                    None,
                )?;
                let bundle = crate::p12::build_pkcs12(&input, password, options.p12_format)?;
                files.push(PlannedFile {
                    path: with_extension(prefix, "p12"),
                    bytes: bundle,
                    mode: PRIVATE_MODE,
                });
            }
        }
        crate::files::write_set(&files, options.overwrite)?;
        Ok(files.into_iter().map(|file| file.path).collect())
    }
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}
