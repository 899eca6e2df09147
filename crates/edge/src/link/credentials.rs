//! The agent's credentials from a join: its key (0600), certificate, the edge's CA and what it joined as.
//!
//! ```text
//! $MOAT_HOME/agent/
//!   agent.key     the agent's private key, PKCS#8 PEM, 0600
//!   agent.crt     its client certificate from the edge's agent CA, PEM
//!   edge-ca.pem   the edge's agent CA: the only root the agent trusts the edge by
//!   agent.json    {"edge":"host:port","agent_name":"...","grant":["*.a.example.com"]}
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use moat_pki::files::{PRIVATE_MODE, PUBLIC_MODE, PlannedFile, write_set};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::LinkError;
use crate::token::check_edge_address;

/// The agent's private key file (0600).
pub const AGENT_KEY_FILE: &str = "agent.key";
/// The agent's client certificate file.
pub const AGENT_CERT_FILE: &str = "agent.crt";
/// The edge's agent CA file.
pub const EDGE_CA_FILE: &str = "edge-ca.pem";
/// What the agent joined as: edge address, name, grant.
pub const AGENT_INFO_FILE: &str = "agent.json";

/// What an agent joined as, kept in `agent.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// The edge's agent address, `host:port`, from the join token.
    pub edge: String,
    /// The name the agent's certificate carries.
    pub agent_name: String,
    /// The hostname globs the edge granted it.
    pub grant: Vec<String>,
}

/// Everything an agent needs to dial its edge: checked when made or loaded (the key matches
/// the certificate, every PEM parses), so dialing fails only on the network. Its `Debug`
/// leaves the key out.
pub struct AgentCredentials {
    info: AgentInfo,
    key_pem: String,
    certificate_pem: String,
    edge_ca_pem: String,
    key: PrivateKeyDer<'static>,
    certificate: CertificateDer<'static>,
    edge_ca: CertificateDer<'static>,
}

impl fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCredentials")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Clone for AgentCredentials {
    fn clone(&self) -> Self {
        AgentCredentials {
            info: self.info.clone(),
            key_pem: self.key_pem.clone(),
            certificate_pem: self.certificate_pem.clone(),
            edge_ca_pem: self.edge_ca_pem.clone(),
            key: self.key.clone_key(),
            certificate: self.certificate.clone(),
            edge_ca: self.edge_ca.clone(),
        }
    }
}

impl AgentCredentials {
    /// Credentials from their parts (a join's answer, or a test's own certificates); checks them
    /// as [`AgentCredentials::load`] does, naming the file each part is saved as.
    pub fn from_pem(
        info: AgentInfo,
        key_pem: String,
        certificate_pem: String,
        edge_ca_pem: String,
    ) -> Result<AgentCredentials, LinkError> {
        Self::checked(Path::new(""), info, key_pem, certificate_pem, edge_ca_pem)
    }

    /// Reads the credentials in `dir` (e.g. `$MOAT_HOME/agent`). A missing file is
    /// [`LinkError::NoCredentials`]; a damaged one, or a key that is not the certificate's,
    /// is [`LinkError::BadCredentials`] naming the file.
    pub fn load(dir: &Path) -> Result<AgentCredentials, LinkError> {
        let info_path = dir.join(AGENT_INFO_FILE);
        let info_text = read(&info_path)?;
        let info: AgentInfo =
            serde_json::from_str(&info_text).map_err(|error| LinkError::BadCredentials {
                path: info_path.clone(),
                problem: format!("does not parse ({error})"),
            })?;
        let key_pem = read(&dir.join(AGENT_KEY_FILE))?;
        let certificate_pem = read(&dir.join(AGENT_CERT_FILE))?;
        let edge_ca_pem = read(&dir.join(EDGE_CA_FILE))?;
        Self::checked(dir, info, key_pem, certificate_pem, edge_ca_pem)
    }

    /// Writes the four files into `dir` (made 0700 when missing), replacing earlier
    /// credentials: the key 0600, the rest 0644, each file atomically.
    pub fn save(&self, dir: &Path) -> Result<(), LinkError> {
        make_private_dir(dir)?;
        let info =
            serde_json::to_vec_pretty(&self.info).map_err(|error| LinkError::BadCredentials {
                path: dir.join(AGENT_INFO_FILE),
                problem: format!("cannot be encoded ({error})"),
            })?;
        let file = |name: &str, bytes: Vec<u8>, mode: u32| PlannedFile {
            path: dir.join(name),
            bytes,
            mode,
        };
        write_set(
            &[
                file(
                    AGENT_KEY_FILE,
                    self.key_pem.clone().into_bytes(),
                    PRIVATE_MODE,
                ),
                file(
                    AGENT_CERT_FILE,
                    self.certificate_pem.clone().into_bytes(),
                    PUBLIC_MODE,
                ),
                file(
                    EDGE_CA_FILE,
                    self.edge_ca_pem.clone().into_bytes(),
                    PUBLIC_MODE,
                ),
                file(AGENT_INFO_FILE, info, PUBLIC_MODE),
            ],
            true,
        )?;
        Ok(())
    }

    /// The edge's agent address, `host:port`.
    pub fn edge(&self) -> &str {
        &self.info.edge
    }

    /// The agent's name (its certificate's CN).
    pub fn agent_name(&self) -> &str {
        &self.info.agent_name
    }

    /// The hostname globs the edge granted.
    pub fn grant(&self) -> &[String] {
        &self.info.grant
    }

    /// The agent's client certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The edge's agent CA, PEM.
    pub fn edge_ca_pem(&self) -> &str {
        &self.edge_ca_pem
    }

    pub(crate) fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    pub(crate) fn edge_ca(&self) -> &CertificateDer<'static> {
        &self.edge_ca
    }

    fn checked(
        dir: &Path,
        info: AgentInfo,
        key_pem: String,
        certificate_pem: String,
        edge_ca_pem: String,
    ) -> Result<AgentCredentials, LinkError> {
        let bad = |name: &str, problem: String| LinkError::BadCredentials {
            path: dir.join(name),
            problem,
        };
        check_edge_address(&info.edge)
            .map_err(|problem| bad(AGENT_INFO_FILE, format!("its edge address {problem}")))?;
        let key_path = dir.join(AGENT_KEY_FILE);
        let key_pair = moat_pki::keys::parse_private_key(&key_path, key_pem.as_bytes(), None)
            .map_err(|error| bad(AGENT_KEY_FILE, format!("is not a usable key ({error})")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| {
            bad(
                AGENT_KEY_FILE,
                format!("is not a PEM private key ({error})"),
            )
        })?;
        let certificate = first_certificate(&certificate_pem)
            .ok_or_else(|| bad(AGENT_CERT_FILE, "holds no PEM certificate".to_owned()))?;
        if !moat_pki::keys::matches_certificate(&key_pair, certificate.as_ref()) {
            return Err(bad(
                AGENT_KEY_FILE,
                format!("is not the key of the certificate in {AGENT_CERT_FILE}"),
            ));
        }
        let edge_ca = first_certificate(&edge_ca_pem)
            .ok_or_else(|| bad(EDGE_CA_FILE, "holds no PEM certificate".to_owned()))?;
        Ok(AgentCredentials {
            info,
            key_pem,
            certificate_pem,
            edge_ca_pem,
            key,
            certificate,
            edge_ca,
        })
    }
}

fn first_certificate(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

fn read(path: &Path) -> Result<String, LinkError> {
    std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => LinkError::NoCredentials {
            path: path.to_path_buf(),
        },
        _ => LinkError::BadCredentials {
            path: path.to_path_buf(),
            problem: format!("cannot be read ({error})"),
        },
    })
}

/// The credentials directory holds a private key: made readable by its owner only.
fn make_private_dir(dir: &Path) -> Result<(), LinkError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| {
        LinkError::Pki(moat_pki::PkiError::Write {
            path: PathBuf::from(dir),
            source,
        })
    })
}
