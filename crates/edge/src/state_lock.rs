//! The locks under which an edge makes its agent CA and its agent listener's certificate, so two processes never make them twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_pki::PkiError;
use moat_pki::files::{LockFailure, lock_exclusive};

/// How long a process waits for another (a second edge starting on the same directory) to
/// finish making the CA or the listener certificate: one key and one signature, far below this.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why the edge's state could not be locked; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state directory could not be made.
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

/// The lock file `NAME.lock` in the edge's state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateLock {
    lock: PathBuf,
}

impl StateLock {
    /// The lock `name.lock` in `dir`.
    pub(crate) fn new(dir: &Path, name: &str) -> StateLock {
        StateLock {
            lock: dir.join(format!("{name}.lock")),
        }
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
}
