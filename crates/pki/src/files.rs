//! Writing outputs so that a crash or an error never leaves a half-written or world-readable file.

use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::PkiError;

/// Mode of files that hold a private key: readable by the owner only.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public files (certificates, CRLs).
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, written and synced
/// with `mode` from its first byte, then renamed over `path`. Readers see the old content or the
/// new one, never a mix, and a crash leaves at most a stray `.moat-*` temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut temporary = temporary_beside(path, mode)?;
    let write_error = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    temporary.write_all(bytes).map_err(write_error)?;
    temporary.as_file().sync_all().map_err(write_error)?;
    temporary
        .persist(path)
        .map_err(|error| write_error(error.error))?;
    sync_directory(path);
    Ok(())
}

/// Like [`write_atomic`], but fails with [`PkiError::OutputExists`] instead of replacing a file,
/// even one created by another process after any earlier check.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut temporary = temporary_beside(path, mode)?;
    let write_error = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    temporary.write_all(bytes).map_err(write_error)?;
    temporary.as_file().sync_all().map_err(write_error)?;
    temporary.persist_noclobber(path).map_err(|error| {
        if error.error.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::OutputExists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(error.error)
        }
    })?;
    sync_directory(path);
    Ok(())
}

/// One file of a multi-file output (certificate, key, bundle) prepared in memory.
#[derive(Clone)]
pub struct PlannedFile {
    /// Where it goes.
    pub path: PathBuf,
    /// What it holds.
    pub bytes: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for PlannedFile {
    // The bytes may be a private key: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish_non_exhaustive()
    }
}

/// Writes a set of files that belong together (a certificate and its key) all or nothing: every
/// destination is checked first, and if one write fails the files already written by this call
/// are removed again. Without `overwrite`, any existing destination stops the whole set.
pub fn write_set(files: &[PlannedFile], overwrite: bool) -> Result<(), PkiError> {
    if !overwrite && let Some(existing) = files.iter().find(|file| file.path.exists()) {
        return Err(PkiError::OutputExists {
            path: existing.path.clone(),
        });
    }
    let mut written: Vec<&Path> = Vec::new();
    for file in files {
        let outcome = if overwrite {
            write_atomic(&file.path, &file.bytes, file.mode)
        } else {
            write_new(&file.path, &file.bytes, file.mode)
        };
        if let Err(error) = outcome {
            if !overwrite {
                for path in written {
                    // Best effort: these files did not exist before this call.
                    let _ = std::fs::remove_file(path);
                }
            }
            return Err(error);
        }
        written.push(&file.path);
    }
    Ok(())
}

/// How often a process waiting for a lock file tries it again.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Why [`lock_exclusive`] returned without the lock; each caller names its own file and fix.
#[derive(Debug)]
pub enum LockFailure {
    /// The lock file could not be created, opened or locked.
    Io(std::io::Error),
    /// Another holder kept the lock for the whole wait.
    StillHeld,
}

/// Takes an exclusive advisory lock (flock) on `path`, creating the file if needed and waiting up
/// to `wait` for another holder. The lock lasts as long as the returned file is open and dies with
/// the process, so a killed command never leaves it held. Lock a file that stays put (never one
/// that is replaced by a rename), so every process locks the same file.
pub fn lock_exclusive(path: &Path, wait: Duration) -> Result<File, LockFailure> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LockFailure::Io)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(TryLockError::WouldBlock) => return Err(LockFailure::StillHeld),
            Err(TryLockError::Error(source)) => return Err(LockFailure::Io(source)),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn temporary_beside(path: &Path, mode: u32) -> Result<tempfile::NamedTempFile, PkiError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".moat-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
        .tempfile_in(&directory)
        .map_err(|source| PkiError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Makes the rename itself durable; failure only weakens crash safety, so it is not an error.
fn sync_directory(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(directory) = std::fs::File::open(parent) {
            let _ = directory.sync_all();
        }
    }
}
