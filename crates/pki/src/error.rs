//! The one error type of the PKI library: every variant names the file or item and the fix.

use std::path::PathBuf;

/// Why a PKI operation failed. Each message is one line a person can act on: the file or item,
/// what is wrong with it, and what to do instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be written; nothing was left half-written at the destination.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An output exists and overwriting was not asked for.
    #[error("{}: already exists; allow overwriting it or choose another output", path.display())]
    OutputExists {
        /// The existing output.
        path: PathBuf,
    },
    /// A file meant to hold a certificate holds none.
    #[error("{}: no certificate found; expected PEM (-----BEGIN CERTIFICATE-----) or DER", path.display())]
    NoCertificate {
        /// The file as given.
        path: PathBuf,
    },
    /// A certificate does not parse.
    #[error("{}: certificate does not parse ({reason}); check that the file is complete", path.display())]
    BadCertificate {
        /// The file as given.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
    /// A file meant to hold a private key holds none.
    #[error(
        "{}: no private key found; expected PEM (PRIVATE KEY, ENCRYPTED PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) or DER",
        path.display()
    )]
    NoPrivateKey {
        /// The file as given.
        path: PathBuf,
    },
    /// The key is encrypted and no passphrase was given.
    #[error(
        "{}: the private key is encrypted; give its passphrase in a file or in the MOAT_CA_PASSPHRASE environment variable",
        path.display()
    )]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The passphrase does not decrypt the key.
    #[error(
        "{}: wrong passphrase for the encrypted private key (or the key is corrupted); check the passphrase file or MOAT_CA_PASSPHRASE",
        path.display()
    )]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The key uses OpenSSL's pre-PKCS#8 PEM encryption, which moat does not read.
    #[error(
        "{path}: legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED); convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out {path}.pk8` and pass {path}.pk8",
        path = path.display()
    )]
    LegacyEncryptedKey {
        /// The key file.
        path: PathBuf,
    },
    /// The key is of a type or size moat cannot sign with.
    #[error(
        "{}: unsupported private key ({reason}); use RSA 2048-8192, ECDSA P-256/P-384/P-521 or Ed25519",
        path.display()
    )]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error(
        "{}: this private key does not match the certificate {} ({subject}); pass the key that was generated with that certificate",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate used as an issuer is not a CA.
    #[error("{}: {subject} is not a CA ({reason}); {fix}", path.display())]
    NotACa {
        /// The certificate file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// Which rule it breaks.
        reason: String,
        /// What to use instead.
        fix: &'static str,
    },
    /// A CA directory lacks one of the files `init-ca` writes.
    #[error(
        "{}: not a moat CA directory (missing {missing}); make one with init-ca, or give the CA's certificate and key files instead",
        dir.display()
    )]
    NotACaDirectory {
        /// The directory as given.
        dir: PathBuf,
        /// The missing file name.
        missing: &'static str,
    },
    /// The parent CA's path length constraint forbids another CA below it.
    #[error(
        "{}: the parent CA ({subject}) allows {allowed} more CA level(s) below it; {fix}",
        path.display()
    )]
    PathLengthExceeded {
        /// The parent's certificate file.
        path: PathBuf,
        /// The parent's subject.
        subject: String,
        /// The parent's remaining path length.
        allowed: u32,
        /// What to change.
        fix: String,
    },
    /// A certificate signing request does not parse.
    #[error("{}: not a certificate signing request ({reason}); expected PEM (-----BEGIN CERTIFICATE REQUEST-----) or DER from `openssl req -new`", path.display())]
    BadCsr {
        /// The CSR file.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
    /// A CSR's self-signature does not verify: it was altered or its key is not the requester's.
    #[error(
        "{}: the CSR's signature does not verify (the request was altered or corrupted); ask the requester for a fresh CSR from `openssl req -new`",
        path.display()
    )]
    CsrSignatureInvalid {
        /// The CSR file.
        path: PathBuf,
    },
    /// A subject alternative name is malformed.
    #[error(
        "subject alternative name {value:?}: {reason}; write dns:NAME, ip:ADDRESS, uri:URI or email:ADDRESS"
    )]
    BadSubjectAltName {
        /// The name as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subject name attribute cannot be encoded.
    #[error("subject {field} {value:?}: {reason}")]
    BadName {
        /// Which attribute (CN, C, O, ...).
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A profile name is neither built in nor in the signing configuration.
    #[error("unknown profile {name:?}{}; use one of: {known}", config.as_ref().map(|path| format!(" in {}", path.display())).unwrap_or_default())]
    UnknownProfile {
        /// The name as given.
        name: String,
        /// The signing configuration it was looked up in, if any.
        config: Option<PathBuf>,
        /// The profiles that exist.
        known: String,
    },
    /// A key usage name in a profile is not known.
    #[error("{}: unknown usage {usage:?} in profile {profile:?}; use {known}", path.display())]
    UnknownUsage {
        /// The signing configuration.
        path: PathBuf,
        /// The profile it appears in.
        profile: String,
        /// The usage as written.
        usage: String,
        /// The usages moat knows.
        known: &'static str,
    },
    /// An expiry or validity period does not parse or is out of range.
    #[error(
        "{origin}: expiry {value:?} {reason}; write hours like \"8760h\" (cfssl) or give the validity in days"
    )]
    BadExpiry {
        /// Where it was written (file and profile, or the flag).
        origin: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cfssl JSON file does not parse or lacks a required field.
    #[error("{}: {reason}", path.display())]
    CfsslJson {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong, with the fix.
        reason: String,
    },
    /// The CA's ledger cannot be read or does not parse.
    #[error("{}: the CA ledger is unreadable ({reason}); restore it from a backup", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The ledger lock could not be taken (the file cannot be created or locked).
    #[error(
        "{}: cannot lock the CA's ledger: {source}; moat pki needs write access to the CA directory",
        path.display()
    )]
    LedgerLock {
        /// The lock file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Another command held the ledger lock for the whole wait.
    #[error(
        "{}: another moat pki command has held the CA's ledger lock for {waited:?}; let it finish and run this command again (a lock dies with its process, so a left-over file blocks nothing)",
        path.display()
    )]
    LedgerLocked {
        /// The lock file.
        path: PathBuf,
        /// How long this command waited.
        waited: std::time::Duration,
    },
    /// A serial number does not parse.
    #[error(
        "{origin}: serial {value:?} is not a hexadecimal number; write it like 4f:3a:... or 4f3a..."
    )]
    BadSerial {
        /// Where it was written (flag, or file and line).
        origin: String,
        /// The value as written.
        value: String,
    },
    /// A serial to revoke was not issued by this CA.
    #[error(
        "serial {serial} is not in {} (not issued by this CA); check the serial, or revoke by the certificate file itself",
        ledger.display()
    )]
    UnknownSerial {
        /// The serial, lower-case hex.
        serial: String,
        /// The ledger searched.
        ledger: PathBuf,
    },
    /// A certificate to revoke was not issued by this CA.
    #[error("{}: {subject} was not issued by this CA ({ca}); revoke it with the CA that issued it ({issuer})", path.display())]
    NotIssuedByCa {
        /// The certificate file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// Its issuer.
        issuer: String,
        /// This CA's subject.
        ca: String,
    },
    /// The request is inconsistent (e.g. a server certificate with no name a client could check).
    #[error("{0}")]
    InvalidRequest(String),
    /// A CA or CRL was asked for with no lifetime; the fix names the setting neutrally, so each
    /// front end (flags, files) can name its own.
    #[error("{problem}; give a validity of N >= 1 days")]
    NoValidity {
        /// What needs the lifetime, e.g. "a CA needs a lifetime of at least one day".
        problem: &'static str,
    },
    /// A server certificate would carry no name a client can check against the hostname.
    #[error("{problem}; give a subject alternative name such as dns:NAME")]
    NoServerName {
        /// Why no name could be derived from the request.
        problem: String,
    },
    /// Revocation and CRLs need the CA's ledger, which an external CA (cert + key files) lacks.
    #[error(
        "{}: {what} needs the CA's ledger; use a CA directory made by init-ca, or list the serials in a file and give that file",
        path.display()
    )]
    LedgerRequired {
        /// The external CA's certificate file.
        path: PathBuf,
        /// What needed the ledger, e.g. "revocation".
        what: &'static str,
    },
    /// The certificate library refused the parameters.
    #[error("cannot build the {what}: {reason}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// The library's explanation.
        reason: String,
    },
    /// A PKCS#12 bundle could not be built.
    #[error(transparent)]
    P12(#[from] crate::p12::P12Error),
}
