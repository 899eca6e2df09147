//! `moat demo`'s second half: the same endpoint published through an edge by an agent, both
//! running in the demo's process on loopback, with the libraries `moat edge` and the agent use.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use moat_agent::{Agent, AgentEvent};
use moat_config::Config;
use moat_edge::HostnameGlob;
use moat_edge_server::{Edge, EdgeSettings};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The hostname the demo publishes through its edge (curl resolves `*.localhost` to loopback).
pub(crate) const TUNNEL_HOST: &str = "demo.tunnel.localhost";

/// A running edge and agent; stopping ends both.
pub(crate) struct TunnelDemo {
    /// Where the edge takes public clients.
    pub public_addr: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TunnelDemo {
    /// Starts an edge under `dir`, joins an agent to it with a one-time token and publishes
    /// `config`'s endpoint (its domain set to [`TUNNEL_HOST`]) with TLS ending at the edge.
    pub(crate) async fn start(dir: &Path, config: &Config) -> anyhow::Result<TunnelDemo> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let settings = EdgeSettings {
            listen: loopback,
            agent_listen: loopback,
            agent_names: Vec::new(),
            domain: None,
            crt: None,
            key: None,
            agent_cas: None,
            grants: Vec::new(),
            heartbeat_tolerance: Duration::from_secs(15),
            moat_home: dir.join("edge-home"),
            admin_listen: None,
            admin_cas: None,
            store: None,
        };
        let edge = Edge::bind(settings, moat_telemetry::Telemetry::default())
            .await
            .context("cannot start the demo edge")?;
        let public_addr = edge.public_addr();
        let agent_address = format!("127.0.0.1:{}", edge.agent_addr().port());
        let grant = HostnameGlob::parse(TUNNEL_HOST).context("the demo hostname")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let (token, _) = edge
            .state()
            .new_token(&agent_address, vec![grant], Duration::from_secs(600), now)
            .await
            .context("cannot make the demo's join token")?;
        let (stop_edge, edge_stopped) = oneshot::channel::<()>();
        let edge_task = tokio::spawn(async move {
            let _ = edge
                .serve(async {
                    let _ = edge_stopped.await;
                })
                .await;
        });

        let credentials = dir.join("agent-home").join("agent");
        moat_edge::join(&token.to_text(), &credentials, Some("demo-agent"))
            .await
            .context("the demo agent cannot join the demo edge")?;
        let mut published = config.clone();
        for endpoint in &mut published.endpoints {
            endpoint.domain = TUNNEL_HOST.to_owned();
            endpoint.publish = true;
        }
        let agent = Agent::new(
            vec![agent_address],
            credentials,
            &published,
            dir.join("agent-home"),
            moat_telemetry::Telemetry::default(),
            None,
        )
        .await
        .context("cannot start the demo agent")?;
        let (events, mut reports) = mpsc::unbounded_channel();
        let (stop_agent, agent_stopped) = oneshot::channel::<()>();
        let agent_task = tokio::spawn(async move {
            let _ = agent
                .run(
                    async {
                        let _ = agent_stopped.await;
                    },
                    events,
                )
                .await;
        });
        // Serving starts once the edge has published the endpoint.
        let published = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = reports.recv().await {
                match event {
                    AgentEvent::Published { .. } => return Ok(()),
                    AgentEvent::Refused { reason, .. } => {
                        anyhow::bail!("the demo edge refused the endpoint: {reason}")
                    }
                    _ => {}
                }
            }
            anyhow::bail!("the demo agent stopped before publishing")
        })
        .await
        .context("the demo agent did not publish its endpoint within 10 s")?;
        published?;
        Ok(TunnelDemo {
            public_addr,
            stop: vec![stop_agent, stop_edge],
            tasks: vec![agent_task, edge_task],
        })
    }

    /// Stops the agent, then the edge.
    pub(crate) async fn stop(self) {
        for (stop, task) in self.stop.into_iter().zip(self.tasks) {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
