//! The edge's trust in agents: its agent CA, one-time join tokens, and grants of hostnames to agents.
//!
//! Library only; the `moat edge` listener and the `moat edge token` / `moat agent join` commands
//! call it. [`link`] carries it over the network: the agent listener's TLS, the join exchange,
//! and the agent's credentials and tunnel dial. [`EdgeState`] opens an edge's state directory (`$MOAT_HOME/edge`):
//!
//! ```text
//! agent-ca/        the agent CA (ca.crt, ca.key 0600, ledger.json): made on first start unless --agent-cas
//!                  (the agent listener makes it even then: its certificate comes from this CA)
//! agent-ca.lock    taken while the CA is opened or made
//! agent-listener/  the agent listener's certificate (listener.crt: leaf + agent CA; listener.key 0600)
//! agent-listener.lock  taken while that certificate is checked or issued
//! tokens.json      join tokens: id, SHA-256 of the secret, expiry, grant, used_at (0600)
//! tokens.lock      taken for every change of tokens.json
//! grants.json      grants bound to joined agents: agent CN -> hostname globs (0600)
//! grants.lock      taken for every change of grants.json
//! ```
//!
//! Joining ([`EdgeState::join`]) takes `tokens.lock`, then `grants.lock`, then the CA's
//! `ledger.lock` (always in this order, so no two processes wait on each other).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent_ca;
pub mod grants;
pub mod join;
pub mod link;
pub mod state_file;
pub mod token;
pub mod tokens;

pub use agent_ca::{AgentCa, AgentCaError, AgentName, AgentNameError, AgentTrust};
pub use grants::{AgentSelector, BindError, Grant, GrantRefusal, GrantStore, Grants, HostnameGlob};
pub use join::{EdgeState, JoinError, JoinedAgent};
pub use link::{
    AgentCredentials, AgentInfo, AgentListenerTls, Arrival, JOIN_ALPN, JoinAnswer, JoinRequest,
    LinkError, accept, dial, join, serve_join,
};
pub use state_file::StateError;
pub use token::{JoinToken, TokenError, TokenExpired, TokenId, TokenSecret};
pub use tokens::{RedeemError, RedeemedToken, TokenRecord, TokenStore};
