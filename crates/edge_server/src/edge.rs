//! `Edge`: the public gateway, the agent listener and the admin listener (API and console) of
//! one `moat edge` process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use moat_control::{AdminListener, Console};
use moat_edge::{AgentListenerTls, EdgeState};
use moat_gateway::{Gateway, GatewayOptions};
use moat_store::Store;
use moat_telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::bind_admin;
use crate::agents::serve_agents;
use crate::control::{ControlPlane, follow_store};
use crate::error::EdgeError;
use crate::registry::Registry;
use crate::routes::EdgeRoutes;
use crate::settings::EdgeSettings;

/// A bound edge, ready to serve.
pub struct Edge {
    gateway: Gateway,
    registry: Arc<Registry>,
    agent_listener: TcpListener,
    acceptor: TlsAcceptor,
    admin: Option<AdminListener>,
}

impl Edge {
    /// Opens the edge's state (making the agent CA on first start unless agents' CAs are
    /// given), binds the public listener with the edge's own endpoint and the agent listener.
    pub async fn bind(settings: EdgeSettings, telemetry: Telemetry) -> Result<Edge, EdgeError> {
        let state_dir = settings.state_dir();
        std::fs::create_dir_all(&state_dir).map_err(|source| {
            EdgeError::Configuration(format!(
                "{}: cannot make the edge's state directory: {source}",
                state_dir.display()
            ))
        })?;
        let store = Store::open(&settings.store_location()).await?;
        let state = Arc::new(
            EdgeState::open(&state_dir, settings.agent_cas.as_deref(), store.clone()).await?,
        );
        let control = Arc::new(ControlPlane::new(store, &state_dir));
        control.refresh().await?;
        crate::uploads::clear_stale(&settings.state_dir());
        let listener_tls = AgentListenerTls::open(&state, &settings.agent_names)?;
        let agent_listener = TcpListener::bind(settings.agent_listen)
            .await
            .map_err(|source| EdgeError::AgentListen {
                address: settings.agent_listen,
                source,
            })?;
        let admin = match settings.admin_listen {
            Some(address) => {
                let agent_port = agent_listener
                    .local_addr()
                    .map_or(settings.agent_listen.port(), |bound| bound.port());
                let listener = bind_admin(
                    address,
                    &state_dir,
                    &settings.agent_names,
                    settings.admin_cas.as_deref(),
                    Arc::clone(&state),
                    Arc::clone(&control),
                    settings.token_address(agent_port),
                )
                .await?;
                // The console sees what the edge reports from here on: agents, handshakes,
                // requests (the gateway and the registry share this telemetry).
                let console = Arc::new(Console::new());
                telemetry.subscribe(console.clone());
                Some(listener.with_console(console))
            }
            None => None,
        };
        let public_addr = concrete_address(settings.listen)?;
        let moat_home = settings.moat_home.clone();
        telemetry.metrics().register_edge();
        let registry = Arc::new(Registry::new(
            settings,
            state,
            control,
            public_addr,
            telemetry.clone(),
        ));
        let config = registry
            .current_config()
            .map_err(EdgeError::Configuration)?;
        let options = GatewayOptions {
            moat_home,
            telemetry,
            upstream_routes: Some(Arc::new(EdgeRoutes {
                registry: Arc::downgrade(&registry),
            })),
            strict_sni: true,
            streams_only: false,
            request_observer: None,
        };
        let gateway = Gateway::bind(&config, &options).await?;
        registry.serve_with(gateway.reloader());
        Ok(Edge {
            gateway,
            registry,
            agent_listener,
            acceptor: TlsAcceptor::from(listener_tls.server_config()),
            admin,
        })
    }

    /// Where public clients connect.
    pub fn public_addr(&self) -> SocketAddr {
        self.registry.public_addr()
    }

    /// Where the admin API answers, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminListener::local_addr)
    }

    /// The agent address join tokens carry.
    pub fn token_address(&self) -> String {
        self.registry
            .settings()
            .token_address(self.agent_addr().port())
    }

    /// Where agents connect.
    pub fn agent_addr(&self) -> SocketAddr {
        self.agent_listener
            .local_addr()
            .unwrap_or(self.registry.settings().agent_listen)
    }

    /// The edge's trust state: tokens are made with it.
    pub fn state(&self) -> &Arc<EdgeState> {
        self.registry.state()
    }

    /// Serves clients and agents until `shutdown` resolves; open client connections drain (as
    /// the gateway's do) with their agents still connected, then the agents are let go.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), EdgeError> {
        let (stop, stopping) = watch::channel(false);
        let agents = tokio::spawn(serve_agents(
            self.agent_listener,
            self.acceptor,
            Arc::clone(&self.registry),
            stopping.clone(),
        ));
        let admin = self.admin.map(|admin| {
            let mut stopping = stopping.clone();
            tokio::spawn(admin.serve(async move {
                crate::agents::stopped(&mut stopping).await;
            }))
        });
        let control = tokio::spawn(follow_store(Arc::clone(&self.registry), stopping));
        let served = self.gateway.serve(shutdown).await;
        let _ = stop.send(true);
        let _ = agents.await;
        let _ = control.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        Ok(served?)
    }
}

/// `listen` with port 0 replaced by a free port: every endpoint the edge serves shares one
/// public socket, which the gateway binds by address.
fn concrete_address(listen: SocketAddr) -> Result<SocketAddr, EdgeError> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = std::net::TcpListener::bind(listen).map_err(|source| EdgeError::Listen {
        address: listen,
        source,
    })?;
    probe.local_addr().map_err(|source| EdgeError::Listen {
        address: listen,
        source,
    })
}
