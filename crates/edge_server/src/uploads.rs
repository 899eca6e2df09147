//! The material an agent uploads with an endpoint (CAs, CRLs, certificate, key, rules), written
//! to files under the edge's state directory so the gateway loads it like any endpoint's.

use std::path::{Path, PathBuf};

use moat_pki::files::write_atomic;
use moat_tunnel::EndpointSpec;

/// The directory under the edge's state directory that holds every upload.
pub(crate) fn root(state_dir: &Path) -> PathBuf {
    state_dir.join("uploads")
}

/// Deletes what a previous run of the edge left (it stopped with agents connected, or was
/// killed): no agent is connected at start, so none of it is in use, and keys must not linger.
pub(crate) fn clear_stale(state_dir: &Path) {
    let root = root(state_dir);
    if let Err(error) = std::fs::remove_dir_all(&root)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %root.display(), %error, "cannot delete uploads a previous run left");
    }
}

/// Where one agent's upload for one hostname lives; removed with the registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Uploaded {
    /// The directory holding the files below.
    pub dir: PathBuf,
    pub mutual_tls_cas: Option<PathBuf>,
    pub crls: Option<PathBuf>,
    pub crt: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    /// The access rules' TOML (a policy file's `[[rules]]`).
    pub rules: Option<String>,
}

/// Why an upload could not be stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot store the uploaded material in {dir}: {source}; check that the edge's state directory is writable"
)]
pub(crate) struct UploadError {
    dir: PathBuf,
    source: moat_pki::PkiError,
}

/// Writes `spec`'s material under `dir` (made fresh; keys 0600, the rest 0644).
pub(crate) fn store(dir: &Path, spec: &EndpointSpec) -> Result<Uploaded, UploadError> {
    let failed = |source| UploadError {
        dir: dir.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|source| {
        failed(moat_pki::PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let write =
        |name: &str, text: &Option<String>, mode: u32| -> Result<Option<PathBuf>, UploadError> {
            match text {
                Some(text) => {
                    let path = dir.join(name);
                    write_atomic(&path, text.as_bytes(), mode).map_err(failed)?;
                    Ok(Some(path))
                }
                None => Ok(None),
            }
        };
    let rules = match &spec.rules {
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    Ok(Uploaded {
        dir: dir.to_path_buf(),
        mutual_tls_cas: write("client-cas.pem", &spec.mutual_tls_cas_pem, 0o644)?,
        crls: write("crls.pem", &spec.crls_pem, 0o644)?,
        crt: write("server.crt", &spec.certificate_pem, 0o644)?,
        key: write("server.key", &spec.private_key_pem, 0o600)?,
        upstream_ca: write("upstream-ca.pem", &spec.upstream_ca_pem, 0o644)?,
        rules,
    })
}

/// Deletes an upload's files: the agent is gone, and so is what it brought.
pub(crate) fn remove(uploaded: &Uploaded) {
    if let Err(error) = std::fs::remove_dir_all(&uploaded.dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %uploaded.dir.display(), %error, "cannot delete an agent's uploaded material");
    }
}
