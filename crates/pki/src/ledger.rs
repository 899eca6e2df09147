//! The CA's ledger: every serial it issued, which of them are revoked and why, and the last CRL number.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
#[cfg(test)]
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::PkiError;
use crate::files::LockFailure;
use crate::serial::Serial;

/// File name of the ledger inside a CA directory.
pub const LEDGER_FILE: &str = "ledger.json";
/// File name of the lock beside the ledger. ledger.json itself is replaced by a rename on every
/// save, so a lock on it would guard a file that is no longer the ledger; this one stays put.
pub const LOCK_FILE: &str = "ledger.lock";
/// How long a command waits for another one to finish its ledger change before giving up.
/// Issuing an RSA-4096 key, the slowest change, takes a few seconds; 30 s leaves room for a queue.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why a certificate was revoked (RFC 5280 5.3.1), with the names `--reason` accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    #[default]
    Unspecified,
    /// The certificate's private key leaked.
    KeyCompromise,
    /// The CA's private key leaked.
    CaCompromise,
    /// The subject's name or affiliation changed.
    AffiliationChanged,
    /// A new certificate replaces this one.
    Superseded,
    /// The certificate is no longer needed.
    CessationOfOperation,
}

impl RevocationReason {
    /// Every reason with its `--reason` name.
    pub const ALL: [(RevocationReason, &'static str); 6] = [
        (RevocationReason::Unspecified, "unspecified"),
        (RevocationReason::KeyCompromise, "keyCompromise"),
        (RevocationReason::CaCompromise, "caCompromise"),
        (RevocationReason::AffiliationChanged, "affiliationChanged"),
        (RevocationReason::Superseded, "superseded"),
        (
            RevocationReason::CessationOfOperation,
            "cessationOfOperation",
        ),
    ];

    /// The `--reason` name, e.g. `keyCompromise`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(reason, _)| *reason == self)
            .map_or("unspecified", |(_, name)| name)
    }

    pub(crate) fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(reason, _)| *reason)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, name)| *name).collect();
                format!(
                    "unknown revocation reason {text:?}; use one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// One certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Serial number; `ledger.json` spells it as [`Serial::to_ledger_hex`] does (lower-case hex
    /// without separators or leading zeros).
    #[serde(with = "ledger_hex")]
    pub serial: Serial,
    /// Subject as OpenSSL prints it (`CN=alice, O=Example`).
    pub subject: String,
    /// Profile it was issued under.
    pub profile: String,
    /// When it was signed (RFC 3339).
    pub issued_at: String,
    /// Its notAfter (RFC 3339).
    pub not_after: String,
    /// Set once the certificate is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    pub reason: RevocationReason,
}

/// The ledger's content, as stored in `ledger.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Format version, so a later moat can migrate old ledgers.
    pub version: u32,
    /// The number of the last CRL signed; the next one gets this plus one (RFC 5280 5.2.3).
    pub crl_number: u64,
    /// Every certificate issued, oldest first.
    pub certificates: Vec<LedgerEntry>,
}

impl Ledger {
    /// Reads the ledger of a CA directory.
    pub fn load(path: &Path) -> Result<Ledger, PkiError> {
        let bytes = crate::files::read(path)?;
        serde_json::from_slice(&bytes).map_err(|error| PkiError::Ledger {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    }

    /// Writes the ledger atomically (temporary file + rename), so a crash leaves the old one whole.
    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|error| PkiError::Ledger {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        json.push(b'\n');
        crate::files::write_atomic(path, &json, crate::files::PUBLIC_MODE)
    }

    /// Reads the ledger of `ca_dir`, lets `change` modify it, and writes it back when it changed,
    /// all while holding the ledger lock: parallel `moat pki` commands on one CA take turns, so
    /// none of them overwrites an issue or a revocation another one just recorded.
    pub fn update<T>(
        ca_dir: &Path,
        change: impl FnOnce(&mut Ledger) -> Result<T, PkiError>,
    ) -> Result<T, PkiError> {
        let _lock = LedgerLock::acquire(ca_dir, LOCK_WAIT)?;
        let path = ledger_path(ca_dir);
        let mut ledger = Ledger::load(&path)?;
        let before = ledger.clone();
        let outcome = change(&mut ledger)?;
        if ledger != before {
            ledger.save(&path)?;
        }
        Ok(outcome)
    }

    /// The entry for `serial`, if this CA issued it.
    pub fn find_mut(&mut self, serial: &Serial) -> Option<&mut LedgerEntry> {
        self.certificates
            .iter_mut()
            .find(|entry| entry.serial == *serial)
    }

    /// Revoked entries, for the CRL.
    pub fn revoked(&self) -> impl Iterator<Item = (&LedgerEntry, &Revocation)> {
        self.certificates
            .iter()
            .filter_map(|entry| entry.revoked.as_ref().map(|revocation| (entry, revocation)))
    }
}

/// An exclusive advisory lock (flock) on a CA directory's `ledger.lock`, released when dropped or
/// when the process ends, so a killed command never leaves the CA locked.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
}

impl LedgerLock {
    /// Takes the lock of `ca_dir`, waiting up to `wait` for another holder to release it.
    pub fn acquire(ca_dir: &Path, wait: Duration) -> Result<LedgerLock, PkiError> {
        let path = ca_dir.join(LOCK_FILE);
        let lock_error = |source| PkiError::LedgerLock {
            path: path.clone(),
            source,
        };
        match crate::files::lock_exclusive(&path, wait) {
            Ok(file) => Ok(LedgerLock { _file: file }),
            Err(LockFailure::StillHeld) => Err(PkiError::LedgerLocked { path, waited: wait }),
            Err(LockFailure::Io(source)) => Err(lock_error(source)),
        }
    }
}

/// Reads a serial as people paste it (`4F:3A:..`, `0x4f3a`, `4f3a`); `origin` names where it
/// came from in the error.
pub fn parse_serial(text: &str, origin: &str) -> Result<Serial, PkiError> {
    Serial::parse(text).ok_or_else(|| PkiError::BadSerial {
        origin: origin.to_owned(),
        value: text.to_owned(),
    })
}

/// How `ledger.json` stores a serial: the string [`Serial::to_ledger_hex`] prints, so ledgers
/// written by earlier versions read the same and are written back byte for byte.
mod ledger_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::serial::Serial;

    pub(super) fn serialize<S: Serializer>(
        serial: &Serial,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&serial.to_ledger_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Serial, D::Error> {
        let text = String::deserialize(deserializer)?;
        Serial::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("serial {text:?} is not a hexadecimal number"))
        })
    }
}

/// Reads a serials file as cfssl's `gencrl` takes it: one hex serial per line; blank lines and
/// lines starting with `#` are skipped.
pub fn read_serials_file(path: &Path) -> Result<Vec<Serial>, PkiError> {
    let bytes = crate::files::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut serials = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        serials.push(parse_serial(
            line,
            &format!("{} line {}", path.display(), index + 1),
        )?);
    }
    Ok(serials)
}

/// The ledger path of a CA directory.
pub fn ledger_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join(LEDGER_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_reads_serials_as_values_and_is_written_back_byte_for_byte() {
        let text = r#"{
  "version": 1,
  "crl_number": 3,
  "certificates": [
    {
      "serial": "8f01",
      "subject": "CN=alice",
      "profile": "client",
      "issued_at": "2030-01-01T00:00:00Z",
      "not_after": "2031-01-01T00:00:00Z"
    },
    {
      "serial": "a1b",
      "subject": "CN=bob",
      "profile": "server",
      "issued_at": "2030-01-02T00:00:00Z",
      "not_after": "2031-01-02T00:00:00Z",
      "revoked": {
        "at": "2030-02-01T00:00:00Z",
        "reason": "keyCompromise"
      }
    }
  ]
}
"#;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = ledger_path(dir.path());
        std::fs::write(&path, text).expect("write the ledger");
        let mut ledger = Ledger::load(&path).expect("an existing ledger reads");
        let pasted = parse_serial("0A:1B", "test").expect("a serial");
        assert!(ledger.find_mut(&pasted).is_some(), "found by value");
        ledger.save(&path).expect("save");
        assert_eq!(std::fs::read_to_string(&path).expect("read back"), text);

        std::fs::write(&path, text.replace("\"a1b\"", "\"zz\"")).expect("write");
        let error = Ledger::load(&path).expect_err("not a serial");
        assert!(error.to_string().contains("\"zz\""), "{error}");
    }

    #[test]
    fn a_held_lock_makes_the_next_command_wait_then_fail_naming_the_lock_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let held = LedgerLock::acquire(dir.path(), LOCK_WAIT).expect("first lock");
        let started = Instant::now();
        let error = LedgerLock::acquire(dir.path(), Duration::from_millis(200))
            .expect_err("the lock is held");
        assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "{}: another moat pki command has held the CA's ledger lock for 200ms;",
                dir.path().join(LOCK_FILE).display()
            )),
            "{message}"
        );
        drop(held);
        LedgerLock::acquire(dir.path(), Duration::ZERO).expect("free once the holder is gone");
    }
}
