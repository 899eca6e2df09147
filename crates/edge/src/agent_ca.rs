//! The edge's agent CA: made on first start unless the operator brings `--agent-cas`; it signs joining agents' CSRs.

use std::fmt;
use std::path::{Path, PathBuf};

use moat_pki::time::Duration;
use moat_pki::{
    CaOptions, CertificateAuthority, CertificateRequest, CsrSigning, Fingerprint,
    IssuedCertificate, KeyType, PkiError, Profile, SubjectName,
};

use crate::state_lock::{StateError, StateLock};

/// The agent CA's directory inside the edge's state directory.
pub const AGENT_CA_DIR: &str = "agent-ca";
/// How long an agent's certificate lasts unless the edge is told otherwise.
pub const DEFAULT_AGENT_LIFETIME: Duration = Duration::days(90);
/// The agent CA's common name.
pub const AGENT_CA_NAME: &str = "moat edge agent CA";

/// An agent's name: the CN of its certificate, what grants and logs call it. A DNS label
/// (1-63 lower-case letters, digits and '-', not starting or ending with '-'), so it can also
/// name a hostname under the edge's domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentName(String);

/// Why an agent name was refused; the message states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "agent name {name:?} {problem}; an agent name is a DNS label: 1 to 63 letters, digits or '-', not starting or ending with '-' (put it in the CSR's common name, or leave that empty to have the edge assign one)"
)]
pub struct AgentNameError {
    /// The name as asked for.
    pub name: String,
    /// Which part of the rule it breaks.
    pub problem: &'static str,
}

impl AgentName {
    /// Checks a name an agent asks for; letters are lower-cased.
    pub fn parse(text: &str) -> Result<AgentName, AgentNameError> {
        let bad = |problem| AgentNameError {
            name: text.to_owned(),
            problem,
        };
        if text.is_empty() {
            return Err(bad("is empty"));
        }
        if text.len() > 63 {
            return Err(bad("is longer than 63 characters"));
        }
        if !text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            return Err(bad("has a character other than a letter, a digit or '-'"));
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(bad("starts or ends with '-'"));
        }
        Ok(AgentName(text.to_ascii_lowercase()))
    }

    /// The name the edge gives an agent that asks for none: `agent-` and the start of its token id.
    pub fn assigned(token_id: &str) -> AgentName {
        let suffix: String = token_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        AgentName(format!("agent-{}", suffix.to_ascii_lowercase()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the agent CA could not be made, opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentCaError {
    /// The edge was given `--agent-cas` and so made no CA: it cannot sign for joining agents.
    #[error("{}: the edge trusts agents by --agent-cas and has no agent CA of its own, so joining with a token is unavailable; give the agent a client certificate from a CA in that file, or start the edge without --agent-cas so that it makes its agent CA", cas_file.display())]
    JoinUnavailable {
        /// The file given with `--agent-cas`.
        cas_file: PathBuf,
    },
    /// Making, opening or signing with the CA failed (the message names the file).
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The lock that keeps two processes from making the CA at once could not be taken.
    #[error(transparent)]
    State(#[from] StateError),
}

/// How the edge decides which agents it trusts.
#[derive(Debug)]
pub enum AgentTrust {
    /// Its own agent CA: agents join with tokens and get certificates from it.
    OwnCa(Box<AgentCa>),
    /// The CAs the operator gave with `--agent-cas`: no tokens, no signing.
    External {
        /// The CA bundle file.
        cas_file: PathBuf,
    },
}

impl AgentTrust {
    /// With `agent_cas`, trusts that file and makes nothing; without, opens the agent CA under
    /// `state_dir`, making it on first start.
    pub fn open(state_dir: &Path, agent_cas: Option<&Path>) -> Result<AgentTrust, AgentCaError> {
        match agent_cas {
            Some(file) => Ok(AgentTrust::External {
                cas_file: file.to_path_buf(),
            }),
            None => AgentCa::open_or_init(&state_dir.join(AGENT_CA_DIR))
                .map(|ca| AgentTrust::OwnCa(Box::new(ca))),
        }
    }

    /// The edge's own agent CA, or the reason joining is unavailable.
    pub fn agent_ca(&self) -> Result<&AgentCa, AgentCaError> {
        match self {
            AgentTrust::OwnCa(ca) => Ok(ca),
            AgentTrust::External { cas_file } => Err(AgentCaError::JoinUnavailable {
                cas_file: cas_file.clone(),
            }),
        }
    }
}

/// Opens the CA in `dir` (one of the edge's own CAs), making it with common name `name` (ECDSA
/// P-256) when `dir` holds none. A lock beside `dir` keeps two processes starting at once from
/// making two CAs.
pub(crate) fn open_or_init_ca(
    dir: &Path,
    name: &str,
) -> Result<CertificateAuthority, AgentCaError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let lock_name = dir.file_name().map_or_else(
        || "ca".to_owned(),
        |file| file.to_string_lossy().into_owned(),
    );
    let _lock = StateLock::new(parent, &lock_name).lock()?;
    if dir.join(moat_pki::ca::CA_CERT_FILE).exists() {
        return Ok(CertificateAuthority::open(dir, None)?);
    }
    let options = CaOptions {
        subject: SubjectName::common_name(name),
        key_type: KeyType::EcdsaP256,
        ..CaOptions::default()
    };
    Ok(CertificateAuthority::init(dir, &options)?)
}

/// The CA that signs joining agents' certificates (ECDSA P-256, key 0600, ledger beside it).
#[derive(Debug)]
pub struct AgentCa {
    authority: CertificateAuthority,
    fingerprint: Fingerprint,
}

impl AgentCa {
    /// Opens the agent CA in `dir`, making it first when `dir` holds none. A lock beside `dir`
    /// keeps two processes starting at once from making two CAs.
    pub fn open_or_init(dir: &Path) -> Result<AgentCa, AgentCaError> {
        let authority = open_or_init_ca(dir, AGENT_CA_NAME)?;
        let fingerprint = Fingerprint::of_der(authority.certificate_der());
        Ok(AgentCa {
            authority,
            fingerprint,
        })
    }

    /// The CA certificate, PEM: what agents trust the edge's agent listener by.
    pub fn certificate_pem(&self) -> &str {
        self.authority.certificate_pem()
    }

    /// SHA-256 of the CA certificate: what a join token carries, so the agent pins the edge.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The CA itself, for the edge's own listener certificate and for revocation.
    pub fn authority(&self) -> &CertificateAuthority {
        &self.authority
    }

    /// Signs an agent's CSR with the client profile: CN = `name`, no other subject attribute and
    /// no SAN the CSR may ask for (the edge, not the agent, says who the agent is), lasting
    /// `lifetime`, recorded in the CA's ledger.
    pub fn sign_agent(
        &self,
        request: &CertificateRequest,
        name: &AgentName,
        lifetime: Duration,
    ) -> Result<IssuedCertificate, AgentCaError> {
        let signing = CsrSigning {
            profile: Profile::client(),
            validity: Some(lifetime),
        };
        Ok(self.authority.sign_csr_as(
            request,
            &SubjectName::common_name(name.as_str()),
            &signing,
        )?)
    }
}
