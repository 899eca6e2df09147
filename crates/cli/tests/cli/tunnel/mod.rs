//! `moat edge` and an agent (`moat http|tls --edge`) as real processes on loopback: joining,
//! publishing, mutual TLS at the edge or at the agent, refusals, an agent that dies, and what
//! the edge reports of it all (audit events, metrics).

mod agent_trust;
mod config_file;
pub(crate) mod control_plane;
mod edge_admin;
pub(crate) mod kit;
mod lifecycle;
mod load;
mod observability;
mod publish;
mod several_edges;
mod tls;
