//! `moat edge` and an agent (`moat http|tls --edge`) as real processes on loopback: joining,
//! publishing, mutual TLS at the edge or at the agent, refusals, and an agent that dies.

mod config_file;
mod kit;
mod lifecycle;
mod publish;
