//! Joining: the edge redeems an agent's token, signs its CSR with the agent CA and binds the token's grant to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_pki::{CertificateRequest, PkiError};

use crate::agent_ca::{
    AgentCaError, AgentName, AgentNameError, AgentTrust, DEFAULT_AGENT_LIFETIME,
};
use crate::grants::{BindError, Grant, GrantStore, Grants, HostnameGlob};
use crate::state_file::StateError;
use crate::token::{JoinToken, TokenError};
use crate::tokens::{CreateError, NewToken, RedeemError, TokenStore};

/// What a joined agent receives: its certificate, the CA to trust the edge by, its name and grant.
#[derive(Debug, Clone)]
pub struct JoinedAgent {
    /// The agent's client certificate, PEM (CN = its name, EKU clientAuth).
    pub certificate_pem: String,
    /// The edge's agent CA certificate, PEM: the agent trusts the agent listener by it.
    pub ca_pem: String,
    /// The name the certificate carries.
    pub agent_name: AgentName,
    /// What it may publish.
    pub grant: Vec<HostnameGlob>,
    /// The certificate's serial, lower-case hex (as the CA's ledger lists it).
    pub serial: String,
}

/// Why an agent could not join; each variant names what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The token's text is malformed or expired.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The edge refused the token (unknown, wrong secret, expired, already used).
    #[error(transparent)]
    Redeem(#[from] RedeemError),
    /// The CSR does not parse or its signature does not verify.
    #[error("the agent's CSR was refused: {0}")]
    Csr(PkiError),
    /// The name the CSR asks for is not a valid agent name.
    #[error(transparent)]
    Name(#[from] AgentNameError),
    /// The name is held by another agent.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The edge has no agent CA (`--agent-cas`), or signing failed.
    #[error(transparent)]
    AgentCa(#[from] AgentCaError),
    /// The edge's state files could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A new token could not be made.
    #[error(transparent)]
    NewToken(#[from] CreateError),
}

/// The edge's trust in agents, over its state directory: the agent CA (or `--agent-cas`), the
/// join tokens and the grants bound to joined agents.
#[derive(Debug)]
pub struct EdgeState {
    dir: PathBuf,
    agents: AgentTrust,
    tokens: TokenStore,
    grants: GrantStore,
    agent_lifetime: moat_pki::time::Duration,
}

impl EdgeState {
    /// Opens the state in `dir` (e.g. `$MOAT_HOME/edge`), making the agent CA under
    /// `dir/agent-ca` on first start unless `agent_cas` (the `--agent-cas` file) is given.
    pub fn open(dir: &Path, agent_cas: Option<&Path>) -> Result<EdgeState, JoinError> {
        Ok(EdgeState {
            dir: dir.to_path_buf(),
            agents: AgentTrust::open(dir, agent_cas)?,
            tokens: TokenStore::new(dir),
            grants: GrantStore::new(dir),
            agent_lifetime: DEFAULT_AGENT_LIFETIME,
        })
    }

    /// Sets how long joined agents' certificates last (default 90 days).
    pub fn with_agent_lifetime(mut self, lifetime: Duration) -> EdgeState {
        self.agent_lifetime =
            moat_pki::time::Duration::try_from(lifetime).unwrap_or(moat_pki::time::Duration::MAX);
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the edge trusts agents.
    pub fn agent_trust(&self) -> &AgentTrust {
        &self.agents
    }

    /// The token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    /// The bound grants' store.
    pub fn grant_store(&self) -> &GrantStore {
        &self.grants
    }

    /// `configured` (the operator's grants) followed by every grant bound to a joined agent:
    /// what the edge checks each registration against.
    pub fn grants(&self, configured: Vec<Grant>) -> Result<Grants, StateError> {
        Ok(Grants::new(configured).with(self.grants.load()?))
    }

    /// Makes a one-time join token for agents reaching the edge at `edge_address` (`host:port`)
    /// that grants `grant`, working for `ttl` from `now` (Unix seconds). Unavailable with `--agent-cas`.
    pub fn new_token(
        &self,
        edge_address: &str,
        grant: Vec<HostnameGlob>,
        ttl: Duration,
        now: u64,
    ) -> Result<JoinToken, JoinError> {
        let ca = self.agents.agent_ca()?;
        let request = NewToken {
            edge_address: edge_address.to_owned(),
            ca_fingerprint: ca.fingerprint(),
            grant,
            ttl,
        };
        Ok(self.tokens.create(&request, now)?)
    }

    /// Joins an agent: reads `token_text` and the agent's CSR (PEM), picks its name (the CSR's
    /// CN, or one the edge assigns when the CN is empty), redeems the token, signs the CSR with
    /// the agent CA and binds the token's grant to the name. Everything is checked before the
    /// token is spent, and the token is marked used only once the certificate is signed and the
    /// grant recorded.
    pub fn join(
        &self,
        token_text: &str,
        csr_pem: &[u8],
        now: u64,
    ) -> Result<JoinedAgent, JoinError> {
        let token = JoinToken::parse(token_text, now)?;
        let ca = self.agents.agent_ca()?;
        let request =
            CertificateRequest::parse(Path::new("agent CSR"), csr_pem).map_err(JoinError::Csr)?;
        let name = match request.common_name().filter(|name| !name.is_empty()) {
            Some(asked) => AgentName::parse(&asked)?,
            None => AgentName::assigned(token.id.as_str()),
        };
        self.tokens
            .redeem_with(&token.id, &token.secret, now, |redeemed| {
                self.grants.bind_with(
                    &name,
                    &redeemed.grant,
                    redeemed.id.as_str(),
                    now,
                    || -> Result<JoinedAgent, JoinError> {
                        let issued = ca.sign_agent(&request, &name, self.agent_lifetime)?;
                        Ok(JoinedAgent {
                            certificate_pem: issued.cert_pem,
                            ca_pem: ca.certificate_pem().to_owned(),
                            agent_name: name.clone(),
                            grant: redeemed.grant.clone(),
                            serial: issued.serial,
                        })
                    },
                )
            })
    }
}
