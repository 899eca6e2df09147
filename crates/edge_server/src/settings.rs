//! `EdgeSettings`: what an edge is told at start (listeners, its domain and certificate, agent trust, grants).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use moat_edge::Grant;

/// An edge's settings, from `moat edge`'s flags or moat.toml's `[edge]` table.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The public listener, where clients of every published hostname connect.
    pub listen: SocketAddr,
    /// The agent listener, where agents connect (and join).
    pub agent_listen: SocketAddr,
    /// The names agents dial the agent listener by (DNS names or IPs), for its certificate;
    /// `localhost` and the loopback addresses are always included.
    pub agent_names: Vec<String>,
    /// The edge's own domain, e.g. `*.tunnel.example.com`: hostnames under it need no
    /// certificate from the agent, names are assigned under it, and a hostname under it that
    /// nobody publishes answers "endpoint offline".
    pub domain: Option<String>,
    /// The certificate chain for `domain`; `None`: moat's local CA issues one.
    pub crt: Option<PathBuf>,
    /// The key of `crt`.
    pub key: Option<PathBuf>,
    /// CAs whose certificates agents present; `None`: the edge's own agent CA (joined agents).
    pub agent_cas: Option<PathBuf>,
    /// The operator's grants, besides those bound to joined agents.
    pub grants: Vec<Grant>,
    /// How long an agent may stay silent before its endpoints are withdrawn.
    pub heartbeat_tolerance: Duration,
    /// moat's data directory; the edge's state lives in `edge/` under it.
    pub moat_home: PathBuf,
}

impl EdgeSettings {
    /// The edge's state directory: agent CA, tokens, grants, uploaded material.
    pub fn state_dir(&self) -> PathBuf {
        self.moat_home.join("edge")
    }
}
