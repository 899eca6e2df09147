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
//! store.db         the store (SQLite) unless the edge is given a PostgreSQL one: join tokens,
//!                  grants, joined agents (moat-store)
//! ```
//!
//! Joining ([`EdgeState::join`]) is one write transaction of the store, inside which the CA's
//! `ledger.lock` is taken to sign.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod agent_ca;
pub mod grants;
pub mod join;
pub mod link;
pub mod state_lock;
pub mod token;
pub mod tokens;

pub use admin::{AdminMaterial, open_admin};
pub use agent_ca::{AgentCa, AgentCaError, AgentName, AgentNameError, AgentTrust};
pub use grants::{AgentSelector, Grant, GrantRefusal, Grants, HostnameGlob};
pub use join::{EdgeState, JoinError, JoinedAgent};
pub use link::{
    AgentCredentials, AgentInfo, AgentListenerTls, Arrival, JOIN_ALPN, JoinAnswer, JoinRequest,
    LinkError, accept, dial, dial_at, join, serve_join,
};
pub use state_lock::StateError;
pub use token::{JoinToken, TokenError, TokenExpired, TokenId, TokenSecret, record_id};
pub use tokens::{RedeemError, create_token, grant_json, grant_of_json};
