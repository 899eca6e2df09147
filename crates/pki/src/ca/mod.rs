//! A certificate authority over files: make one, open one, and issue, sign, revoke and list revocations.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};

use crate::PkiError;
use crate::csr::CertificateRequest;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile};
use crate::keys::{self, KeyType};
use crate::ledger::{self, Ledger, LedgerEntry, Revocation, RevocationReason};
use crate::names::{SubjectAltName, SubjectName};
use crate::profile::Profile;

/// The CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key inside a CA directory (mode 0600, encrypted PKCS#8 with a passphrase).
pub const CA_KEY_FILE: &str = "ca.key";
/// For an intermediate CA: its certificate followed by the intermediates above it (not the root),
/// which is what a leaf's chain file needs after the leaf.
pub const CHAIN_FILE: &str = "chain.crt";

/// How far back notBefore is set, so that peers whose clocks run a little slow accept a
/// certificate right after it is made.
const BACKDATE: Duration = Duration::minutes(5);

/// What kind of CA to make with [`CertificateAuthority::init`].
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The CA's subject.
    pub subject: SubjectName,
    /// Its key algorithm.
    pub key_type: KeyType,
    /// Lifetime in days.
    pub validity_days: u32,
    /// Encrypts `ca.key` as PKCS#8 (PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256) when set.
    pub passphrase: Option<String>,
    /// basicConstraints pathLenConstraint: how many CA levels may follow below. `None` means
    /// unconstrained for a root and 0 (issues only leaves) for an intermediate.
    pub path_len: Option<u8>,
    /// Replace an existing CA in the directory.
    pub overwrite: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            subject: SubjectName::common_name("moat CA"),
            key_type: KeyType::default(),
            validity_days: 3650,
            passphrase: None,
            path_len: None,
            overwrite: false,
        }
    }
}

/// What leaf certificate to make with [`CertificateAuthority::issue`].
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Its subject.
    pub subject: SubjectName,
    /// Its SANs; a server profile with none gets the common name as one.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Usages and default lifetime.
    pub profile: Profile,
    /// Lifetime; overrides the profile's.
    pub validity: Option<Duration>,
    /// Key algorithm of the new key.
    pub key_type: KeyType,
}

impl LeafRequest {
    /// A client certificate for `common_name` with the client profile's defaults.
    pub fn client(common_name: &str) -> LeafRequest {
        LeafRequest {
            subject: SubjectName::common_name(common_name),
            subject_alt_names: Vec::new(),
            profile: Profile::client(),
            validity: None,
            key_type: KeyType::default(),
        }
    }

    /// A server certificate for `domain` (also its DNS SAN) with the server profile's defaults.
    pub fn server(domain: &str) -> LeafRequest {
        LeafRequest {
            subject: SubjectName::common_name(domain),
            subject_alt_names: vec![SubjectAltName::from_common_name(domain)],
            profile: Profile::server(),
            validity: None,
            key_type: KeyType::default(),
        }
    }
}

/// How to sign a CSR with [`CertificateAuthority::sign_csr`].
#[derive(Debug, Clone)]
pub struct CsrSigning {
    /// Usages and default lifetime (the CSR's own usage requests are not honoured).
    pub profile: Profile,
    /// Lifetime; overrides the profile's.
    pub validity: Option<Duration>,
}

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

/// Revocations and CRLs to make with [`CertificateAuthority::crl`].
#[derive(Debug, Clone)]
pub struct CrlOptions {
    /// Time until nextUpdate.
    pub validity: Duration,
    /// More serials to list (lower-case hex, e.g. from [`ledger::read_serials_file`]), revoked
    /// with reason unspecified as of now.
    pub extra_serials: Vec<String>,
}

/// A signed certificate revocation list.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    /// PEM (`X509 CRL`).
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// Its CRL number.
    pub number: u64,
    /// How many serials it lists.
    pub revoked_count: usize,
}

/// The result of [`CertificateAuthority::revoke`].
#[derive(Debug, Clone)]
pub struct RevokeOutcome {
    /// The ledger entry after the call.
    pub entry: LedgerEntry,
    /// False when the certificate was already revoked (the first revocation is kept).
    pub newly_revoked: bool,
}

/// A CA: its certificate and key, plus (for a CA directory made by `init-ca`) its ledger.
pub struct CertificateAuthority {
    dir: Option<PathBuf>,
    cert_path: PathBuf,
    certificate_der: CertificateDer<'static>,
    certificate_pem: String,
    chain_pem: String,
    key: KeyPair,
    subject: String,
    not_after: OffsetDateTime,
    path_len: Option<u32>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_path", &self.cert_path)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

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

    fn from_parts(
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

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate_der
    }

    /// The certificates a leaf's chain carries after the leaf (empty for a root CA).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA's subject as OpenSSL prints it.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The CA directory, when this CA has one (and so a ledger).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.certificate_der, &self.key).map_err(|error| {
            PkiError::BadCertificate {
                path: self.cert_path.clone(),
                reason: format!("cannot use it as an issuer: {error}"),
            }
        })
    }

    /// Makes a key and a leaf certificate for it, records it in the ledger and returns both.
    pub fn issue(&self, request: &LeafRequest) -> Result<IssuedCertificate, PkiError> {
        let key = keys::generate(request.key_type)?;
        let subject = request.subject.to_distinguished_name()?;
        let subject_alt_names = with_default_san(
            &request.subject.common_name,
            &request.subject_alt_names,
            &request.profile,
        )?;
        let validity = self.validity(request.validity, &request.profile)?;
        let mut issued = self.sign(
            subject,
            &subject_alt_names,
            &request.profile,
            validity,
            &key,
            request.key_type.is_rsa(),
        )?;
        issued.key_pem = Some(key.serialize_pem());
        self.record(
            &CertificateDer::from(issued.cert_der.clone()),
            &request.profile.name,
        )?;
        Ok(issued)
    }

    /// Signs a verified CSR under `signing.profile` and records it in the ledger (when this CA
    /// has one). The subject and SANs come from the CSR; a server profile without SANs gets the
    /// CN as one.
    pub fn sign_csr(
        &self,
        request: &CertificateRequest,
        signing: &CsrSigning,
    ) -> Result<IssuedCertificate, PkiError> {
        let common_name = request
            .subject
            .get(&rcgen::DnType::CommonName)
            .and_then(|value| match value {
                rcgen::DnValue::Utf8String(text) => Some(text.clone()),
                rcgen::DnValue::PrintableString(text) => Some(text.as_str().to_owned()),
                rcgen::DnValue::Ia5String(text) => Some(text.as_str().to_owned()),
                _ => None,
            })
            .unwrap_or_default();
        let subject_alt_names =
            with_default_san(&common_name, &request.subject_alt_names, &signing.profile)?;
        let validity = self.validity(signing.validity, &signing.profile)?;
        let issued = self.sign(
            request.subject.clone(),
            &subject_alt_names,
            &signing.profile,
            validity,
            &request.public_key,
            request.public_key_is_rsa,
        )?;
        self.record(
            &CertificateDer::from(issued.cert_der.clone()),
            &signing.profile.name,
        )?;
        Ok(issued)
    }

    fn validity(&self, asked: Option<Duration>, profile: &Profile) -> Result<Duration, PkiError> {
        let validity = asked
            .or(profile.validity)
            .unwrap_or_else(|| Duration::days(365));
        if validity <= Duration::ZERO {
            return Err(PkiError::BadExpiry {
                origin: format!("profile {:?}", profile.name),
                value: format!("{}s", validity.whole_seconds()),
                reason: "is not a positive lifetime".to_owned(),
            });
        }
        Ok(validity)
    }

    fn sign(
        &self,
        subject: rcgen::DistinguishedName,
        subject_alt_names: &[SubjectAltName],
        profile: &Profile,
        validity: Duration,
        public_key: &impl rcgen::PublicKeyData,
        key_can_encrypt: bool,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        // A certificate cannot outlive its issuer: verifiers would refuse it once the CA expires.
        params.not_after = (now + validity).min(self.not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = profile.key_usages(key_can_encrypt);
        params.extended_key_usages = profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.subject_alt_names = subject_alt_names
            .iter()
            .map(SubjectAltName::to_san_type)
            .collect::<Result<_, _>>()?;
        let issuer = self.issuer()?;
        let certificate =
            params
                .signed_by(public_key, &issuer)
                .map_err(|error| PkiError::Build {
                    what: "certificate",
                    reason: error.to_string(),
                })?;
        let der = certificate.der().to_vec();
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&der).map_err(|error| PkiError::Build {
                what: "certificate",
                reason: error.to_string(),
            })?;
        Ok(IssuedCertificate {
            cert_pem: certificate.pem(),
            chain_pem: self.chain_pem.clone(),
            key_pem: None,
            serial: ledger::serial_hex(parsed.raw_serial()),
            subject: parsed.subject().to_string(),
            not_after: parsed.validity().not_after.to_datetime(),
            cert_der: der.clone(),
        })
    }

    /// Adds a certificate this CA signed to its ledger (no-op for a CA without one).
    fn record(&self, certificate: &CertificateDer<'_>, profile: &str) -> Result<(), PkiError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let (_, parsed) =
            x509_parser::parse_x509_certificate(certificate).map_err(|error| PkiError::Build {
                what: "ledger entry",
                reason: error.to_string(),
            })?;
        let entry = LedgerEntry {
            serial: ledger::serial_hex(parsed.raw_serial()),
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

    /// Marks `serial` (any hex form) revoked in the ledger. A serial this CA never issued is an
    /// error; revoking twice keeps the first date and reason.
    pub fn revoke(
        &self,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<RevokeOutcome, PkiError> {
        let dir = self.ledger_dir_or_error("revocation")?;
        let serial = ledger::normalize_serial(serial, "the serial to revoke")?;
        Ledger::update(dir, |ledger| mark_revoked(ledger, dir, &serial, reason))
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
        let serial = ledger::serial_hex(parsed.raw_serial());
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
        let mut listed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for (entry, revocation) in ledger.revoked() {
            if listed.insert(entry.serial.clone()) {
                let at = OffsetDateTime::parse(
                    &revocation.at,
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap_or(now);
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&ledger::serial_bytes(&entry.serial)),
                    revocation_time: at,
                    reason_code: Some(revocation.reason.to_rcgen()),
                    invalidity_date: None,
                });
            }
        }
        for serial in &options.extra_serials {
            if listed.insert(serial.clone()) {
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&ledger::serial_bytes(serial)),
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

/// Marks `serial` revoked in `ledger` unless it already is (the first date and reason stay).
fn mark_revoked(
    ledger: &mut Ledger,
    dir: &Path,
    serial: &str,
    reason: RevocationReason,
) -> Result<RevokeOutcome, PkiError> {
    let entry = ledger
        .find_mut(serial)
        .ok_or_else(|| PkiError::UnknownSerial {
            serial: serial.to_owned(),
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

/// A server profile needs a name a client can check: the CN becomes the SAN when none is given.
fn with_default_san(
    common_name: &str,
    given: &[SubjectAltName],
    profile: &Profile,
) -> Result<Vec<SubjectAltName>, PkiError> {
    if !given.is_empty() || !profile.is_server() {
        return Ok(given.to_vec());
    }
    if common_name.trim().is_empty() {
        return Err(PkiError::NoServerName {
            problem: format!(
                "a {} certificate needs a name clients can check, but there is no SAN and no common name",
                profile.name
            ),
        });
    }
    let san = SubjectAltName::from_common_name(common_name);
    // Re-parse so a CN that is not a valid DNS name is reported as such.
    let checked: SubjectAltName = san.to_string().parse().map_err(|_| {
        PkiError::NoServerName {
            problem: format!(
                "the common name {common_name:?} is not a DNS name or IP address, so it cannot be the server certificate's SAN"
            ),
        }
    })?;
    Ok(vec![checked])
}

fn random_serial() -> Result<SerialNumber, PkiError> {
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

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LOCK_FILE, LedgerLock};

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
