//! `moat edge`: the public gateway whose endpoints are published by agents over their tunnels.
//!
//! Agents dial the agent listener (mutual TLS, ALPN `moat-tunnel/1`; or `moat-join/1` to trade
//! a join token for a certificate) and publish endpoints on their session's control channel.
//! The edge checks each hostname against the grants and the other agents' claims, writes what
//! the agent uploaded (CAs, CRLs, certificate, key, rules) under its state directory and
//! reloads its gateway — the same gateway `moat http` runs, so handshakes, alerts, rules,
//! identity headers, audit and metrics are the same. An edge-terminated endpoint's upstream
//! connections are streams to its agent; an agent-terminated endpoint is relayed before TLS,
//! its ClientHello and all, so the edge never holds its key. When a session ends (cleanly, or
//! silent past the heartbeat tolerance) its endpoints and uploads are withdrawn: hostnames
//! under the edge's domain answer 404 "endpoint offline", tls ones `unrecognized_name`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod agents;
mod control;
mod edge;
mod error;
mod registry;
mod routes;
mod settings;
mod uploads;

pub use edge::Edge;
pub use error::EdgeError;
pub use settings::EdgeSettings;
