//! Joining: the edge redeems an agent's token, signs its CSR with the agent CA and binds the token's
//! grant to it, in one transaction of the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_pki::{CertificateRequest, PkiError};
use moat_store::{AgentJoin, JoinRefusal, Store, StoreError};

use crate::agent_ca::{
    AgentCaError, AgentName, AgentNameError, AgentTrust, DEFAULT_AGENT_LIFETIME,
};
use crate::grants::{Grant, Grants, HostnameGlob};
use crate::token::{JoinToken, TokenError, record_id};
use crate::tokens::{CreateError, NewToken, RedeemError, create_token, grant_of_json};

/// The store fact naming the agent CA every edge sharing the store signs joins with.
const AGENT_CA_FACT: &str = "agent_ca_sha256";

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
    #[error(
        "agent name {agent:?} is taken by an agent that joined with token {token_id}; ask for another name in the CSR's common name, or leave it empty to have the edge assign one"
    )]
    NameTaken {
        /// The name asked for.
        agent: String,
        /// The token the holder joined with.
        token_id: String,
    },
    /// The edge has no agent CA (`--agent-cas`), or signing failed.
    #[error(transparent)]
    AgentCa(#[from] AgentCaError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store belongs to edges whose agent CA is another one: this edge's joined agents
    /// and tokens would not be trusted by them, nor theirs by it.
    #[error(
        "{store}: the edges sharing this store sign agents with the agent CA whose SHA-256 is {recorded}, and this edge's ({dir}) is {own}; copy {dir} from one of those edges (agent-ca/ca.crt and ca.key) before starting this one"
    )]
    ForeignAgentCa {
        /// The store, for the message.
        store: String,
        /// The agent CA directory of this edge.
        dir: PathBuf,
        /// The SHA-256 the store records.
        recorded: String,
        /// This edge's.
        own: String,
    },
    /// A new token could not be made.
    #[error(transparent)]
    NewToken(#[from] CreateError),
}

/// The edge's trust in agents: the agent CA (or `--agent-cas`) in its state directory, and the
/// join tokens and grants in its store.
#[derive(Debug)]
pub struct EdgeState {
    dir: PathBuf,
    agents: AgentTrust,
    store: Store,
    agent_lifetime: moat_pki::time::Duration,
}

impl EdgeState {
    /// Opens the state in `dir` (e.g. `$MOAT_HOME/edge`), making the agent CA under
    /// `dir/agent-ca` on first start unless `agent_cas` (the `--agent-cas` file) is given, over
    /// `store`. When the edge signs joins, its agent CA must be the one every other edge on the
    /// store signs with (the first edge records it).
    pub async fn open(
        dir: &Path,
        agent_cas: Option<&Path>,
        store: Store,
    ) -> Result<EdgeState, JoinError> {
        let agents = AgentTrust::open(dir, agent_cas)?;
        if let Ok(ca) = agents.agent_ca() {
            let own = ca.fingerprint().to_string();
            let recorded = store.settle_fact(AGENT_CA_FACT, &own).await?;
            if recorded != own {
                return Err(JoinError::ForeignAgentCa {
                    store: store.location().to_owned(),
                    dir: dir.join("agent-ca"),
                    recorded,
                    own,
                });
            }
        }
        Ok(EdgeState {
            dir: dir.to_path_buf(),
            agents,
            store,
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

    /// The store the tokens and grants are in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `configured` (the operator's grants from flags or file) followed by every grant the
    /// store holds: what the edge checks each registration against. A stored grant that does
    /// not read is skipped with a warning (it grants nothing).
    pub async fn grants(&self, configured: Vec<Grant>) -> Result<Grants, StoreError> {
        let rows = self.store.control_state().await?.grants;
        Ok(Grants::new(configured).with(rows.iter().filter_map(|row| {
            Grant::from_row(row)
                .map_err(|problem| {
                    tracing::warn!(%problem, "a stored grant is ignored until it is fixed");
                })
                .ok()
        })))
    }

    /// Makes a one-time join token for agents reaching the edge at `edge_address` (`host:port`)
    /// that grants `grant`, working for `ttl` from `now` (Unix seconds), and records it.
    /// Unavailable with `--agent-cas`. Returns the token and the row recorded.
    pub async fn new_token(
        &self,
        edge_address: &str,
        grant: Vec<HostnameGlob>,
        ttl: Duration,
        now: u64,
    ) -> Result<(JoinToken, moat_store::JoinTokenRow), JoinError> {
        let ca = self.agents.agent_ca()?;
        let request = NewToken {
            edge_address: edge_address.to_owned(),
            ca_fingerprint: ca.fingerprint(),
            grant,
            ttl,
        };
        Ok(create_token(&self.store, &request, now).await?)
    }

    /// Joins an agent: reads `token_text` and the agent's CSR (PEM), picks its name (the CSR's
    /// CN, or one the edge assigns when the CN is empty), then in one transaction of the store
    /// redeems the token, claims the name, records the token's grant for it and signs the CSR
    /// with the agent CA. A refusal or failure at any step leaves the token unspent.
    pub async fn join(
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
        let grant_id = record_id("ag")?;
        let secret_sha256 = token.secret.sha256_hex();
        let join = AgentJoin {
            token_id: token.id.as_str(),
            secret_sha256: &secret_sha256,
            agent: name.as_str(),
            grant_id: &grant_id,
            now: i64::try_from(now).unwrap_or(i64::MAX),
        };
        let outcome = self
            .store
            .join_agent(
                &join,
                |redeemed| -> Result<(JoinedAgent, String), JoinError> {
                    let grant = grant_of_json(&redeemed.grant_json).map_err(|problem| {
                        RedeemError::Grant {
                            id: redeemed.id.clone(),
                            problem,
                        }
                    })?;
                    // Signing writes the CA's ledger under its lock: milliseconds.
                    let issued = ca.sign_agent(&request, &name, self.agent_lifetime)?;
                    let serial = issued.serial.clone();
                    Ok((
                        JoinedAgent {
                            certificate_pem: issued.cert_pem,
                            ca_pem: ca.certificate_pem().to_owned(),
                            agent_name: name.clone(),
                            grant,
                            serial: issued.serial,
                        },
                        serial,
                    ))
                },
            )
            .await?;
        outcome.map_err(|refusal| match refusal {
            JoinRefusal::Token(refusal) => RedeemError::from_refusal(refusal, now).into(),
            JoinRefusal::NameTaken { agent, token_id } => JoinError::NameTaken { agent, token_id },
        })
    }
}
