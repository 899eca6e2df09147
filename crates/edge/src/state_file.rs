//! The edge's small JSON state files (tokens, bound grants): 0600, replaced atomically, changed under a lock file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_pki::PkiError;
use moat_pki::files::{LockFailure, PRIVATE_MODE, lock_exclusive, write_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a change waits for another process (a second `moat edge token`, a joining agent on
/// the running edge) to finish its change of the same file. A change is a read, a check and a
/// write, plus at most one certificate signature: far below this.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why a state file could not be read or changed; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("{}: cannot read the edge's state file: {source}; check its owner and permissions", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file does not parse as the state it should hold.
    #[error("{}: the edge's state file does not parse ({reason}); restore it from a backup, or remove it to start over (what it records is then lost)", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
    /// The directory or the new content could not be written; the old file is left whole.
    #[error(transparent)]
    Write(#[from] PkiError),
    /// The lock file cannot be created or locked.
    #[error("{}: cannot lock the edge's state: {source}; the edge needs write access to its state directory", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Another process held the lock for the whole wait.
    #[error("{}: another moat process has held the edge's state lock for {waited:?}; let it finish and try again (a lock dies with its process, so a left-over file blocks nothing)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
}

/// One state file (`NAME.json`) and the lock file beside it (`NAME.lock`). The JSON file is
/// replaced by a rename on every change, so the lock is taken on the file that stays put.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
    lock: PathBuf,
}

impl StateFile {
    /// The state file `name.json` in `dir`.
    pub(crate) fn new(dir: &Path, name: &str) -> StateFile {
        StateFile {
            path: dir.join(format!("{name}.json")),
            lock: dir.join(format!("{name}.lock")),
        }
    }

    /// The JSON file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The current content; a file that does not exist yet reads as `T::default()`. No lock is
    /// needed to read: every write replaces the whole file at once.
    pub(crate) fn read<T: DeserializeOwned + Default>(&self) -> Result<T, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
            path: self.path.clone(),
            reason: error.to_string(),
        })
    }

    /// Reads the file, lets `change` modify it and writes it back (0600, atomically) when it
    /// changed, all under the lock, so concurrent changes take turns and none is lost. When
    /// `change` fails, nothing is written.
    pub(crate) fn update<T, R, E>(
        &self,
        change: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned + Default + Clone + PartialEq,
        E: From<StateError>,
    {
        let _lock = self.lock()?;
        let mut state: T = self.read()?;
        let before = state.clone();
        let outcome = change(&mut state)?;
        if state != before {
            self.write(&state)?;
        }
        Ok(outcome)
    }

    /// Holds the lock file for as long as the returned guard lives.
    pub(crate) fn lock(&self) -> Result<std::fs::File, StateError> {
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir).map_err(|source| {
                StateError::Write(PkiError::Write {
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
        }
        lock_exclusive(&self.lock, LOCK_WAIT).map_err(|failure| match failure {
            LockFailure::Io(source) => StateError::Lock {
                path: self.lock.clone(),
                source,
            },
            LockFailure::StillHeld => StateError::Locked {
                path: self.lock.clone(),
                waited: LOCK_WAIT,
            },
        })
    }

    fn write<T: Serialize>(&self, state: &T) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(state).map_err(|error| StateError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode: {error}"),
        })?;
        json.push(b'\n');
        write_atomic(&self.path, &json, PRIVATE_MODE)?;
        Ok(())
    }
}
