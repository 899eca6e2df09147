//! The agents connected to this edge and the hostnames each publishes, as the edge's events
//! tell them: a session appears when it opens and goes when it ends (a killed agent's as soon
//! as the edge sees its connection close, at the latest after the heartbeat tolerance).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use moat_telemetry::Event;
use moat_telemetry::audit::now_rfc3339;
use serde_json::{Value, json};

/// One agent's session.
#[derive(Debug, Clone)]
struct Session {
    /// Sessions opened before it: the newest of one name is the one with the highest.
    opened: u64,
    name: String,
    serial: String,
    connected_at: String,
    /// Hostname → (`http`|`tls`, where TLS ends, shared by a pool).
    endpoints: BTreeMap<String, (String, String, bool)>,
}

/// The sessions, by the agent's address (one TCP connection each).
#[derive(Debug, Default)]
pub(crate) struct LiveAgents {
    sessions: Mutex<BTreeMap<SocketAddr, Session>>,
    /// Sessions opened so far.
    opened: std::sync::atomic::AtomicU64,
}

impl LiveAgents {
    /// Applies `event` when it is about an agent or what it publishes.
    pub fn record(&self, event: &Event<'_>) {
        match event {
            Event::AgentConnected {
                agent,
                address,
                serial,
            } => {
                let opened = self
                    .opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.lock().insert(
                    *address,
                    Session {
                        opened,
                        name: (*agent).to_owned(),
                        serial: (*serial).to_owned(),
                        connected_at: now_rfc3339(),
                        endpoints: BTreeMap::new(),
                    },
                );
            }
            Event::AgentDisconnected { address, .. } => {
                self.lock().remove(address);
            }
            Event::EndpointPublished {
                hostname,
                agent,
                kind,
                terminate_at,
                pool,
            } => {
                // Events name the agent, not its session: the newest session of that name
                // published it (two sessions of one name are one agent reconnecting).
                let mut sessions = self.lock();
                let newest = sessions
                    .values_mut()
                    .filter(|session| session.name == *agent)
                    .max_by_key(|session| session.opened);
                if let Some(session) = newest {
                    session.endpoints.insert(
                        (*hostname).to_owned(),
                        ((*kind).to_owned(), (*terminate_at).to_owned(), *pool),
                    );
                }
            }
            Event::EndpointRemoved {
                hostname, agent, ..
            } => {
                for session in self.lock().values_mut() {
                    if session.name == *agent {
                        session.endpoints.remove(*hostname);
                    }
                }
            }
            _ => {}
        }
    }

    /// `{agents: [{name, address, serial, connected_at, endpoints: [{hostname, kind,
    /// terminate_at, pool}]}]}`, by name.
    pub fn snapshot(&self) -> Value {
        let sessions = self.lock();
        let mut agents: Vec<Value> = sessions
            .iter()
            .map(|(address, session)| {
                let endpoints: Vec<Value> = session
                    .endpoints
                    .iter()
                    .map(|(hostname, (kind, terminate_at, pool))| {
                        json!({
                            "hostname": hostname,
                            "kind": kind,
                            "terminate_at": terminate_at,
                            "pool": pool,
                        })
                    })
                    .collect();
                json!({
                    "name": session.name,
                    "address": address.to_string(),
                    "serial": session.serial,
                    "connected_at": session.connected_at,
                    "endpoints": endpoints,
                })
            })
            .collect();
        agents.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!({ "agents": agents })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use moat_telemetry::{AgentDisconnect, EndpointRemoval};

    use super::*;

    #[test]
    fn an_agent_shows_with_its_endpoints_until_its_session_ends() {
        let agents = LiveAgents::default();
        let address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        agents.record(&Event::AgentConnected {
            agent: "alice",
            address,
            serial: "0a",
        });
        for hostname in ["a.example.com", "b.example.com"] {
            agents.record(&Event::EndpointPublished {
                hostname,
                agent: "alice",
                kind: "http",
                terminate_at: "edge",
                pool: false,
            });
        }
        agents.record(&Event::EndpointRemoved {
            hostname: "b.example.com",
            agent: "alice",
            reason: EndpointRemoval::Withdrawn,
        });
        let shown = agents.snapshot();
        assert_eq!(shown["agents"][0]["name"], "alice", "{shown}");
        assert_eq!(
            shown["agents"][0]["endpoints"],
            json!([{"hostname": "a.example.com", "kind": "http", "terminate_at": "edge", "pool": false}])
        );
        agents.record(&Event::AgentDisconnected {
            agent: "alice",
            address,
            reason: AgentDisconnect::Closed,
            detail: "gone",
        });
        assert_eq!(agents.snapshot(), json!({ "agents": [] }));
    }

    #[test]
    fn an_endpoint_goes_to_the_newest_session_of_its_agent() {
        let agents = LiveAgents::default();
        let (old, new): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:40001".parse().unwrap(),
        );
        for address in [old, new] {
            agents.record(&Event::AgentConnected {
                agent: "alice",
                address,
                serial: "0a",
            });
        }
        agents.record(&Event::EndpointPublished {
            hostname: "a.example.com",
            agent: "alice",
            kind: "http",
            terminate_at: "edge",
            pool: false,
        });
        let shown = agents.snapshot();
        let holder = shown["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|agent| agent["endpoints"] != json!([]))
            .unwrap_or_else(|| panic!("{shown}"));
        assert_eq!(holder["address"], new.to_string(), "{shown}");
    }
}
