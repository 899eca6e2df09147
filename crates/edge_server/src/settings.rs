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
    /// Where the admin API listens (`None`: it does not).
    pub admin_listen: Option<SocketAddr>,
    /// CAs (PEM) whose client certificates are the API's administrators; `None`: the edge's
    /// own admin CA (whose local administrator certificate is in `edge/admin/`).
    pub admin_cas: Option<PathBuf>,
    /// The store: a `postgres://` URL (several edges share it) or a SQLite file; `None`:
    /// `store.db` in the state directory.
    pub store: Option<String>,
}

impl EdgeSettings {
    /// The edge's state directory: agent CA, tokens, grants, uploaded material.
    pub fn state_dir(&self) -> PathBuf {
        self.moat_home.join("edge")
    }

    /// The agent address join tokens carry: the first agent name (else `localhost`) and the
    /// agent listener's port.
    pub fn token_address(&self, agent_port: u16) -> String {
        let host = self
            .agent_names
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{agent_port}")
    }

    /// Where the store is: the setting, else `store.db` in the state directory.
    pub fn store_location(&self) -> String {
        match &self.store {
            Some(location) => location.clone(),
            None => self.state_dir().join("store.db").display().to_string(),
        }
    }

    /// How this edge names itself in the store's session records: the machine's name and the
    /// public port (two edges on one machine differ by port).
    pub(crate) fn edge_name(&self, public_addr: SocketAddr) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "edge".to_owned());
        format!("{host}:{}", public_addr.port())
    }
}
