//! `Agent`: keeps a session to the edge, registers the endpoints, and serves the streams.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moat_config::{Config, EndpointConfig, EndpointKind, TerminateAt};
use moat_edge::AgentCredentials;
use moat_gateway::{Entrance, Gateway, GatewayOptions};
use moat_proxy::connector::{TcpConnector, UpstreamConnector};
use moat_proxy::http::HttpProxy;
use moat_proxy::http::inspect::RequestObserver;
use moat_telemetry::ConnectionInfo;
use moat_telemetry::Telemetry;
use moat_tunnel::{
    AgentMessage, AgentSession, EdgeMessage, IncomingStreams, SessionSettings, StreamHeader,
    TunnelStream,
};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::publish::{self, PublishError};

/// Copy buffer per direction between a stream and the upstream: one 64 KiB DATA frame (the
/// tunnel's largest) per read; tokio's default 8 KiB quarters each frame and costs the system
/// calls and flow-control updates four times (see `moat_tunnel`'s frame size for figures).
const COPY_BUFFER: usize = 64 * 1024;

/// How long dialing the edge (TCP and TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the agent reports as it goes, for the command to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The session to the edge is up.
    Connected {
        /// The edge's address.
        edge: String,
    },
    /// The edge publishes an endpoint.
    Published {
        /// The edge's address.
        edge: String,
        /// The endpoint's name in the agent's configuration.
        endpoint: String,
        /// The hostname the edge serves it on.
        hostname: String,
        /// Where the public reaches it.
        url: String,
    },
    /// The edge refused to publish an endpoint.
    Refused {
        /// The edge's address.
        edge: String,
        /// The endpoint's name in the agent's configuration.
        endpoint: String,
        /// The edge's reason.
        reason: String,
    },
    /// The edge withdrew a published endpoint (its grant was removed, its hostname reserved
    /// for another agent, or defined as another kind of endpoint).
    Withdrawn {
        /// The edge's address.
        edge: String,
        /// The hostname.
        hostname: String,
        /// The edge's reason.
        reason: String,
    },
    /// The session ended; the agent tries again after `retry_in`.
    Disconnected {
        /// The edge's address.
        edge: String,
        /// Why it ended.
        reason: String,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent's credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] moat_edge::LinkError),
    /// An endpoint cannot be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The gateway for agent-terminated endpoints could not start.
    #[error(transparent)]
    Gateway(#[from] moat_gateway::GatewayError),
    /// The inspecting proxy of an endpoint whose TLS ends at the edge could not be built.
    #[error("endpoint {endpoint}: {source}")]
    Inspect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: Box<moat_proxy::ProxyError>,
    },
    /// The agent's gateway bound an endpoint without an entrance (a defect in moat).
    #[error("endpoint {endpoint}: the agent's gateway serves it without an entrance for streams")]
    NoEntrance {
        /// The endpoint.
        endpoint: String,
    },
}

/// One endpoint as the agent serves its streams.
#[derive(Debug, Clone)]
enum Served {
    /// TLS ended at the edge: a stream is a plaintext connection for the upstream.
    ToUpstream(Arc<dyn UpstreamConnector>),
    /// TLS ended at the edge, and the request inspector is on: a stream is an HTTP connection
    /// whose requests pass through a proxy that shows them to the inspector and changes
    /// nothing (the edge admitted them and named their client in their headers).
    Inspected {
        /// The endpoint's name.
        endpoint: String,
        proxy: Arc<HttpProxy>,
    },
    /// TLS ends here: a stream goes through the gateway's entrance.
    ThroughGateway(Entrance),
}

/// How often the agent resolves the edges' names again: an edge added behind a name gets a
/// session within this.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// An agent, ready to connect.
pub struct Agent {
    edges: Vec<String>,
    credentials: AgentCredentials,
    endpoints: Vec<EndpointConfig>,
    specs: Vec<moat_tunnel::EndpointSpec>,
    served: Vec<Served>,
    gateway: Option<Gateway>,
    settings: SessionSettings,
}

impl Agent {
    /// Prepares to publish `config`'s endpoints through the edges at `edges` (`host:port`
    /// each; the agent keeps a session to every one, and to every address a name resolves to)
    /// with the credentials joined into `credentials_dir`; each endpoint's `pool` says whether
    /// its hostname is shared with other agents. Endpoints whose TLS ends here are served by a
    /// gateway of their own, on loopback only, which reports its HTTP exchanges to
    /// `request_observer` (the request inspector).
    pub async fn new(
        edges: Vec<String>,
        credentials_dir: PathBuf,
        config: &Config,
        moat_home: PathBuf,
        telemetry: Telemetry,
        request_observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<Agent, AgentError> {
        let credentials = AgentCredentials::load(&credentials_dir)?;
        let mut specs = Vec::new();
        for endpoint in &config.endpoints {
            specs.push(publish::spec_of(endpoint)?);
        }
        // The agent's own gateway binds no socket: its clients arrive over the tunnel only.
        let local: Vec<EndpointConfig> = config
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.terminate_at == TerminateAt::Agent)
            .map(|endpoint| EndpointConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..endpoint.clone()
            })
            .collect();
        let gateway = if local.is_empty() {
            None
        } else {
            let local_config = Config {
                endpoints: local,
                ..config.clone()
            };
            let options = GatewayOptions {
                moat_home,
                telemetry,
                upstream_routes: None,
                // The edge routed each stream by its SNI: the name must be the endpoint's, and
                // so must each request's host.
                strict_sni: true,
                streams_only: true,
                request_observer: request_observer.clone(),
            };
            Some(Gateway::bind(&local_config, &options).await?)
        };
        let mut served = Vec::new();
        for endpoint in &config.endpoints {
            served.push(match endpoint.terminate_at {
                TerminateAt::Edge => {
                    let connector = TcpConnector::to_upstream_of(endpoint);
                    match (&request_observer, endpoint.kind) {
                        (Some(observer), EndpointKind::Http) => Served::Inspected {
                            endpoint: endpoint.name.clone(),
                            proxy: Arc::new(inspecting_proxy(endpoint, connector, observer)?),
                        },
                        _ => Served::ToUpstream(connector),
                    }
                }
                TerminateAt::Agent => {
                    let entrance = gateway
                        .as_ref()
                        .and_then(|gateway| gateway.entrance_of(&endpoint.name));
                    match entrance {
                        Some(entrance) => Served::ThroughGateway(entrance),
                        None => {
                            return Err(AgentError::NoEntrance {
                                endpoint: endpoint.name.clone(),
                            });
                        }
                    }
                }
            });
        }
        Ok(Agent {
            edges,
            credentials,
            endpoints: config.endpoints.clone(),
            specs,
            served,
            gateway,
            settings: SessionSettings::default(),
        })
    }

    /// Changes the session's heartbeat tolerance (how soon a silent edge is given up on).
    pub fn with_heartbeat_tolerance(mut self, tolerance: Duration) -> Agent {
        self.settings.heartbeat_tolerance = tolerance;
        self
    }

    /// Keeps a session to the edge until `shutdown` resolves, reporting to `events`. On
    /// shutdown the session is closed cleanly, so the edge withdraws the endpoints at once.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        events: mpsc::UnboundedSender<AgentEvent>,
    ) -> Result<(), AgentError> {
        let (stop, stopping) = watch::channel(false);
        let shutdown_watch = tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let gateway_task = self.gateway.map(|gateway| {
            let mut stopping = stopping.clone();
            tokio::spawn(gateway.serve(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }))
        });
        let shared = Arc::new(Shared {
            credentials: self.credentials,
            endpoints: self.endpoints,
            specs: self.specs,
            served: self.served,
            settings: self.settings,
            events,
        });
        let wanted = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let mut links: HashMap<Target, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut stopping = stopping;
        while !*stopping.borrow() {
            let targets = resolve_targets(&self.edges).await;
            *wanted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                targets.iter().cloned().collect::<HashSet<_>>();
            links.retain(|_, task| !task.is_finished());
            for target in targets {
                if links.contains_key(&target) {
                    continue;
                }
                let link = Link {
                    target: target.clone(),
                    shared: Arc::clone(&shared),
                    wanted: Arc::clone(&wanted),
                };
                links.insert(target, tokio::spawn(link.run(stopping.clone())));
            }
            tokio::select! {
                _ = tokio::time::sleep(RESOLVE_EVERY) => {}
                _ = stopped(&mut stopping) => break,
            }
        }
        for (_, task) in links {
            let _ = task.await;
        }
        shutdown_watch.abort();
        if let Some(task) = gateway_task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// One session the agent keeps: an edge, and which of the addresses its name resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    /// `host:port` as configured; the edge's certificate is verified for the host.
    edge: String,
    /// The address dialed, when the name resolves to several (a session to each); `None`:
    /// the name is dialed as it resolves at each attempt.
    at: Option<SocketAddr>,
}

impl Target {
    /// How logs and events name it.
    fn name(&self) -> String {
        match self.at {
            Some(at) => format!("{} ({at})", self.edge),
            None => self.edge.clone(),
        }
    }
}

/// The sessions to keep: one per edge, or, for a name that resolves to several addresses, one
/// per address. A name that does not resolve now is dialed by name (and retried).
async fn resolve_targets(edges: &[String]) -> Vec<Target> {
    let mut targets = Vec::new();
    for edge in edges {
        let addresses: Vec<SocketAddr> = match tokio::net::lookup_host(edge.as_str()).await {
            Ok(found) => {
                let mut addresses: Vec<SocketAddr> = found.collect();
                addresses.sort();
                addresses.dedup();
                addresses
            }
            Err(_) => Vec::new(),
        };
        if addresses.len() > 1 {
            targets.extend(addresses.into_iter().map(|at| Target {
                edge: edge.clone(),
                at: Some(at),
            }));
        } else {
            targets.push(Target {
                edge: edge.clone(),
                at: None,
            });
        }
    }
    targets
}

/// What every session shares.
struct Shared {
    credentials: AgentCredentials,
    endpoints: Vec<EndpointConfig>,
    specs: Vec<moat_tunnel::EndpointSpec>,
    served: Vec<Served>,
    settings: SessionSettings,
    events: mpsc::UnboundedSender<AgentEvent>,
}

/// One session to one edge, kept up (reconnecting with backoff) while its target is wanted.
struct Link {
    target: Target,
    shared: Arc<Shared>,
    /// The targets the last resolution found: a link whose address left the name ends
    /// when its session does.
    wanted: Arc<std::sync::Mutex<HashSet<Target>>>,
}

impl Link {
    async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        let edge = self.target.name();
        while !*stopping.borrow() {
            let reason = self.session(&mut backoff, &mut stopping.clone()).await;
            if *stopping.borrow() {
                break;
            }
            if !self
                .wanted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(&self.target)
            {
                tracing::info!(edge = %edge, reason = %reason, "disconnected from an edge its name no longer resolves to");
                break;
            }
            let retry_in = backoff.next_delay();
            tracing::warn!(edge = %edge, reason = %reason, retry_in_ms = retry_in.as_millis() as u64, "disconnected from the edge; reconnecting");
            let _ = self.shared.events.send(AgentEvent::Disconnected {
                edge: edge.clone(),
                reason,
                retry_in,
            });
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                _ = stopped(&mut stopping) => break,
            }
        }
    }

    /// One session: dial, register, serve streams until it ends; returns why it ended.
    async fn session(&self, backoff: &mut Backoff, stopping: &mut watch::Receiver<bool>) -> String {
        let shared = &self.shared;
        let edge = self.target.name();
        let connecting = async {
            let tls = moat_edge::dial_at(
                &shared.credentials,
                &self.target.edge,
                self.target.at,
                DIAL_TIMEOUT,
            )
            .await
            .map_err(|error| error.to_string())?;
            AgentSession::handshake(tls, &shared.settings)
                .await
                .map_err(|error| error.to_string())
        };
        let session = tokio::select! {
            connected = connecting => match connected {
                Ok(session) => session,
                Err(reason) => return reason,
            },
            _ = stopped(stopping) => return "shutting down".to_owned(),
        };
        let (incoming, mut control) = session.into_parts();
        tracing::info!(edge = %edge, "connected to the edge");
        let _ = shared
            .events
            .send(AgentEvent::Connected { edge: edge.clone() });
        let register = AgentMessage::Register {
            endpoints: shared.specs.clone(),
        };
        if let Err(error) = control.send(&register).await {
            return format!("cannot register: {error}");
        }
        // The edge answers each endpoint in order; streams name the hostname it granted.
        let mut by_hostname: HashMap<String, Served> = HashMap::new();
        for (endpoint, served) in shared.endpoints.iter().zip(&shared.served) {
            match control.recv().await {
                Ok(Some(EdgeMessage::Registered { hostname, url })) => {
                    tracing::info!(edge = %edge, endpoint = %endpoint.name, %hostname, %url, "endpoint published");
                    let _ = shared.events.send(AgentEvent::Published {
                        edge: edge.clone(),
                        endpoint: endpoint.name.clone(),
                        hostname: hostname.clone(),
                        url,
                    });
                    by_hostname.insert(hostname, served.clone());
                }
                Ok(Some(EdgeMessage::Refused { hostname, reason })) => {
                    tracing::error!(edge = %edge, endpoint = %endpoint.name, %hostname, %reason, "the edge refused to publish the endpoint");
                    let _ = shared.events.send(AgentEvent::Refused {
                        edge: edge.clone(),
                        endpoint: endpoint.name.clone(),
                        reason,
                    });
                }
                Ok(Some(EdgeMessage::Hello(_) | EdgeMessage::Withdrawn { .. })) => {}
                Ok(None) => return "the edge closed the session".to_owned(),
                Err(error) => return format!("control channel: {error}"),
            }
        }
        backoff.reset();
        let by_hostname = Arc::new(by_hostname);
        serve_streams(incoming, control, by_hostname, stopping, |message| {
            if let EdgeMessage::Withdrawn { hostname, reason } = message {
                tracing::warn!(edge = %edge, %hostname, %reason, "the edge withdrew the endpoint");
                let _ = shared.events.send(AgentEvent::Withdrawn {
                    edge: edge.clone(),
                    hostname,
                    reason,
                });
            }
        })
        .await
    }
}

/// Serves the edge's streams until the session ends (or shutdown closes it).
async fn serve_streams(
    mut incoming: IncomingStreams,
    mut control: moat_tunnel::AgentControl,
    served: Arc<HashMap<String, Served>>,
    stopping: &mut watch::Receiver<bool>,
    mut on_message: impl FnMut(EdgeMessage),
) -> String {
    let mut control_open = true;
    loop {
        tokio::select! {
            stream = incoming.accept() => match stream {
                Some((header, stream)) => {
                    let served = Arc::clone(&served);
                    tokio::spawn(serve_stream(header, stream, served));
                }
                None => {
                    return match incoming.closed().await {
                        Ok(()) => "the edge closed the session".to_owned(),
                        Err(error) => error.to_string(),
                    };
                }
            },
            message = control.recv(), if control_open => match message {
                Ok(Some(message)) => on_message(message),
                Ok(None) => control_open = false,
                Err(error) => {
                    tracing::warn!(%error, "control channel failed");
                    control_open = false;
                }
            },
            _ = stopped(stopping) => {
                // Ending the control channel is how the edge learns the agent leaves on
                // purpose: it withdraws the endpoints at once and records a clean close. A
                // GOAWAY alone would leave the endpoints published, failing new clients, until
                // the connection ended. Open streams still finish.
                let (mut sender, _receiver) = control.into_split();
                match tokio::time::timeout(Duration::from_secs(1), sender.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "cannot end the control channel"),
                    Err(_) => tracing::debug!("the control channel did not end within 1 s"),
                }
                incoming.shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), incoming.closed()).await;
                return "shutting down".to_owned();
            }
        }
    }
}

/// The proxy that shows an edge-terminated endpoint's requests to the inspector: no rules and
/// no CAs (the edge applied them), headers passed as the edge wrote them.
fn inspecting_proxy(
    endpoint: &EndpointConfig,
    connector: Arc<dyn UpstreamConnector>,
    observer: &Arc<dyn RequestObserver>,
) -> Result<HttpProxy, AgentError> {
    let judged_at_edge = EndpointConfig {
        rules: Vec::new(),
        mutual_tls_cas: Vec::new(),
        ..endpoint.clone()
    };
    let proxy = HttpProxy::with_connector(&judged_at_edge, connector).map_err(|source| {
        AgentError::Inspect {
            endpoint: endpoint.name.clone(),
            source: Box::new(source),
        }
    })?;
    Ok(proxy
        .relayed_from_edge()
        .with_observer(Some(Arc::clone(observer))))
}

/// One stream: to the upstream (TLS ended at the edge) or through the gateway (TLS ends here).
async fn serve_stream(
    header: StreamHeader,
    stream: TunnelStream,
    served: Arc<HashMap<String, Served>>,
) {
    match (served.get(&header.endpoint), header.terminated_at_edge) {
        (Some(Served::Inspected { endpoint, proxy }), true) => {
            let mut io = tokio::io::BufReader::new(stream);
            // The edge speaks HTTP/2 on a stream only for gRPC (`upstream_protocol`); its
            // connection preface says so in the first bytes.
            let http2 = matches!(
                tokio::io::AsyncBufReadExt::fill_buf(&mut io).await,
                Ok(bytes) if bytes.starts_with(b"PRI * HTTP/2.0")
            );
            let info = ConnectionInfo {
                endpoint: endpoint.clone(),
                peer_addr: header.client_addr,
                local_addr: header.server_addr,
                sni: header.sni.clone(),
                sni_routed: false,
                // The edge's TLS session is not the agent's to know.
                tls_version: "",
                cipher_suite: None,
                http2,
                client: None,
            };
            // Never asked to stop: the stream ends with the session.
            let (_never, shutdown) = watch::channel(false);
            Arc::clone(proxy).serve_connection(io, info, shutdown).await;
        }
        (Some(Served::ToUpstream(connector)), true) => {
            let mut stream = stream;
            match connector.connect().await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut stream,
                        &mut upstream,
                        COPY_BUFFER,
                        COPY_BUFFER,
                    )
                    .await;
                }
                Err(error) => {
                    tracing::warn!(endpoint = %header.endpoint, upstream = %connector.address(), %error, "cannot reach the upstream");
                }
            }
        }
        (Some(Served::ThroughGateway(entrance)), false) => {
            if let Err(error) = entrance
                .hand_in_to(stream, header.client_addr, header.server_addr)
                .await
            {
                tracing::warn!(endpoint = %header.endpoint, %error, "the agent's gateway is not accepting");
            }
        }
        (Some(_), claimed_at_edge) => {
            // An edge must not skip the agent's own verification, nor get plaintext from it.
            tracing::warn!(
                endpoint = %header.endpoint,
                claimed_at_edge,
                "stream refused: its header says TLS ended elsewhere than the endpoint terminates it"
            );
        }
        (None, _) => {
            tracing::warn!(endpoint = %header.endpoint, "stream refused: this agent does not publish that endpoint");
        }
    }
}

/// Resolves once `stopping` turns true (or its sender is gone); the guard `wait_for` returns is
/// not `Send`, so it is dropped here rather than held across the caller's `select!`.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
