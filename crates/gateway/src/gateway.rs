//! The gateway: binds every endpoint, accepts TLS connections, and hands each one to its
//! endpoint's HTTP proxy or TCP forwarder until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use moat_config::{Config, EndpointKind};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::endpoint::{Handler, LoadedEndpoint};
use crate::entrance::{Entrance, HandedIn};
use crate::error::GatewayError;
use crate::handshake::{Arrival, ClientStream, Established, Relayed, establish};
use crate::reload::{NewListener, Reloader};
use crate::sni::Routes;
use crate::upstream_route::{RelayTarget, RelayedClient, UpstreamRoutes};
use moat_proxy::connector::{Connecting, UpstreamConnector};
use moat_proxy::http::inspect::RequestObserver;
use moat_proxy::proxy_protocol;
use moat_proxy::tcp_forward::{ForwardEnd, TcpForwarder};
use moat_telemetry::metrics::OpenConnection;
use moat_telemetry::presented::Presented;
use moat_telemetry::{HandshakeRefusal, Telemetry};

/// How long in-flight connections may take to finish after shutdown begins; whatever is still
/// open then is closed, so a stuck client cannot keep moat from exiting.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Settings of the process rather than of an endpoint.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// moat's data directory (`$MOAT_HOME`, else `$XDG_DATA_HOME/moat`, else
    /// `~/.local/share/moat`); its local CA lives here.
    pub moat_home: PathBuf,
    /// Audit stream, metrics and readiness shared by every endpoint.
    pub telemetry: Telemetry,
    /// Where endpoints' clients go when not to their upstream over TCP (an edge's tunnels);
    /// `None`: every upstream is dialed over TCP.
    pub upstream_routes: Option<Arc<dyn UpstreamRoutes>>,
    /// When true, a client whose SNI names no endpoint is refused with `unrecognized_name`
    /// even on an address with a single endpoint (an edge serves only the names published on
    /// it); when false, a lone endpoint takes every client whatever name it asked for.
    pub strict_sni: bool,
    /// When true, no socket is bound: every connection arrives through an [`Entrance`] (an
    /// agent's gateway, whose clients come over its tunnel only). Find each endpoint's entrance
    /// with [`Gateway::entrance_of`].
    pub streams_only: bool,
    /// Sees every HTTP exchange of every `http` endpoint (the request inspector, `moat http
    /// --inspect`); `None`: nothing is copied.
    pub request_observer: Option<Arc<dyn RequestObserver>>,
}

/// What a bound endpoint tells the user: where to connect and which CA to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// What it does with connections.
    pub kind: EndpointKind,
    /// The address it actually listens on (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The URL clients use: `https://DOMAIN:PORT` (`tls://` for tls endpoints).
    pub url: String,
    /// The local CA certificate to trust (`curl --cacert`) when moat issued the server certificate.
    pub local_ca: Option<PathBuf>,
}

/// Every endpoint bound and ready to serve.
pub struct Gateway {
    /// One permit per client connection served, shared by every listener (`max_connections`).
    connection_slots: Arc<Semaphore>,
    bound: Vec<BoundEndpoint>,
    reloader: Reloader,
    telemetry: Telemetry,
    /// Sockets bound by the first start and by reloads (for addresses the configuration gained).
    new_listeners: mpsc::UnboundedReceiver<NewListener>,
}

/// One listening socket and the endpoints served on it (several when they share the address
/// and SNI tells them apart); a reload swaps the endpoints, never the socket.
struct Listener {
    /// `None` for a gateway that takes connections through its entrances only.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    routes: Arc<ArcSwap<Routes>>,
    telemetry: Telemetry,
    /// Turns true when a reload drops the address: accepting stops, open connections go on.
    retired: watch::Receiver<bool>,
    /// The process's connection permits; a connection accepted without one is closed at once.
    connection_slots: Arc<Semaphore>,
    /// Connections handed in through the address's [`Entrance`], served like accepted ones.
    handed_in: mpsc::Receiver<HandedIn>,
}

impl Gateway {
    /// Loads every endpoint's certificates, CAs and CRLs and binds its listener (port 0 picks a
    /// free port); endpoints with the same listen address share one socket. Any error is a
    /// startup error naming the file and the fix; on error nothing stays bound.
    pub async fn bind(config: &Config, options: &GatewayOptions) -> Result<Gateway, GatewayError> {
        let telemetry = options.telemetry.clone();
        let (add_listener, new_listeners) = mpsc::unbounded_channel();
        let reloader = Reloader::new(options, add_listener);
        let mut bound: Vec<BoundEndpoint> = reloader
            .start(config.clone())?
            .iter()
            .map(|(endpoint, local_addr)| bound_endpoint(endpoint, *local_addr))
            .collect();
        // Report in configuration order, whatever the grouping.
        bound.sort_by_key(|endpoint| {
            config
                .endpoints
                .iter()
                .position(|configured| configured.name == endpoint.name)
        });
        let connection_slots = Arc::new(Semaphore::new(
            config.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Ok(Gateway {
            connection_slots,
            bound,
            reloader,
            telemetry,
            new_listeners,
        })
    }

    /// The bound endpoints, in configuration order.
    pub fn endpoints(&self) -> Vec<BoundEndpoint> {
        self.bound.clone()
    }

    /// The entrance through which a connection that arrived on a stream (an edge's tunnel)
    /// is served like one accepted on `local_addr`, the address endpoints are bound to (as in
    /// [`BoundEndpoint::local_addr`]); `None` when no endpoint is served there. Take it before
    /// [`Gateway::serve`]; connections handed in wait until serving starts.
    pub fn entrance(&self, local_addr: SocketAddr) -> Option<Entrance> {
        self.reloader.entrance(local_addr)
    }

    /// The entrance of the endpoint named `name` (the only way in for a gateway with
    /// [`GatewayOptions::streams_only`]); `None` when no such endpoint is served.
    pub fn entrance_of(&self, name: &str) -> Option<Entrance> {
        self.reloader.entrance_of(name)
    }

    /// The handle that swaps in new certificates, trust and configuration while serving.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// connections finish (at most [`DRAIN_DEADLINE`]) and returns.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        // A watch channel rather than a broadcast: late subscribers (connections accepted just
        // before shutdown) still see the flag, and only one value is ever sent.
        let (stop, stopping) = watch::channel(false);
        let mut loops = JoinSet::new();
        let mut new_listeners = self.new_listeners;
        let accept_on = |added: NewListener, loops: &mut JoinSet<()>| match added
            .listener
            .map(TcpListener::from_std)
            .transpose()
        {
            Ok(listener) => {
                let local_addr = added.local_addr;
                loops.spawn(accept_loop(
                    Listener {
                        listener,
                        local_addr,
                        routes: added.routes,
                        retired: added.retired,
                        handed_in: added.handed_in,
                        telemetry: self.telemetry.clone(),
                        connection_slots: Arc::clone(&self.connection_slots),
                    },
                    stopping.clone(),
                ));
            }
            Err(error) => tracing::error!(
                %error,
                "cannot accept on a bound socket; restart moat to serve it"
            ),
        };
        // The sockets of the first start are waiting already.
        while let Ok(added) = new_listeners.try_recv() {
            accept_on(added, &mut loops);
        }
        self.telemetry.set_ready(true);
        let stale_crl_timer = tokio::spawn(self.reloader.clone().report_stale_crls_hourly());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(added) = new_listeners.recv() => accept_on(added, &mut loops),
            }
        }
        self.telemetry.set_ready(false);
        tracing::info!("shutting down: no new connections; letting in-flight ones finish");
        stale_crl_timer.abort();
        let _ = stop.send(true);
        while loops.join_next().await.is_some() {}
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// What the user is told about one endpoint at startup.
fn bound_endpoint(endpoint: &LoadedEndpoint, local_addr: SocketAddr) -> BoundEndpoint {
    let config = &endpoint.config;
    let scheme = match config.kind {
        EndpointKind::Http => "https",
        EndpointKind::Tls => "tls",
    };
    BoundEndpoint {
        name: config.name.clone(),
        kind: config.kind,
        local_addr,
        url: format!("{scheme}://{}:{}", config.domain, local_addr.port()),
        local_ca: endpoint.local_ca.clone(),
    }
}

/// Accepts connections on one address, and takes those handed in through its entrance, until
/// shutdown, then drains them.
async fn accept_loop(mut listener: Listener, stopping: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let stop_signal = stopped(stopping.clone());
    tokio::pin!(stop_signal);
    let retire_signal = retired(listener.retired.clone());
    tokio::pin!(retire_signal);
    let address = listener.local_addr;
    let mut over_limit = OverLimit::default();
    loop {
        tokio::select! {
            accepted = accept_from(listener.listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    // Requests and responses are written whole; Nagle would only delay them.
                    let _ = stream.set_nodelay(true);
                    listener.start(stream, peer, address, &mut connections, &stopping, &mut over_limit);
                }
                Err(error) => {
                    // Usually out of file descriptors; pausing lets connections close.
                    tracing::error!(listen = %address, %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(HandedIn { stream, peer, local }) = listener.handed_in.recv() => {
                listener.start(stream, peer, local, &mut connections, &stopping, &mut over_limit);
            }
            Some(_) = connections.join_next() => {}
            _ = &mut stop_signal => break,
            _ = &mut retire_signal => break,
        }
    }
    drop(listener.listener);
    // Connections still queued at the entrance are closed with it.
    drop(listener.handed_in);
    if !*stopping.borrow() {
        // Retired by a reload: open connections go on until they end or moat shuts down.
        tracing::info!(listen = %address, open = connections.len(), "stopped listening: the address left the configuration");
        tokio::select! {
            _ = async { while connections.join_next().await.is_some() {} } => return,
            _ = &mut stop_signal => {}
        }
    }
    let open = connections.len();
    if open > 0 {
        tracing::info!(listen = %address, open, "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listen = %address,
            closed = connections.len(),
            "closing connections still open after the drain deadline"
        );
        connections.shutdown().await;
    }
}

impl Listener {
    /// Starts serving one client connection, accepted or handed in, on its own task in
    /// `connections`; without a free permit it is closed and reported as `connection_limit`.
    fn start<S: ClientStream>(
        &self,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
        connections: &mut JoinSet<()>,
        stopping: &watch::Receiver<bool>,
        over_limit: &mut OverLimit,
    ) {
        let routes = self.routes.load_full();
        let Ok(slot) = Arc::clone(&self.connection_slots).try_acquire_owned() else {
            over_limit.refuse(stream, peer, &routes, &self.telemetry);
            return;
        };
        // With one endpoint on the address its name is known before the ClientHello;
        // otherwise it is recorded once the SNI has picked it.
        let span = match routes.endpoints() {
            [only] => {
                tracing::info_span!("connection", endpoint = %only.config.name, peer = %peer)
            }
            _ => tracing::info_span!("connection", endpoint = tracing::field::Empty, peer = %peer),
        };
        // The permit goes into the connection's own future: wrapping that future in another
        // that holds it would store the whole connection state twice.
        let connection = handle_connection(
            stream,
            peer,
            local,
            routes,
            self.telemetry.clone(),
            stopping.clone(),
            slot,
        );
        connections.spawn(connection.instrument(span));
    }
}

/// Connections refused because `max_connections` are open, and when that was last logged.
#[derive(Default)]
struct OverLimit {
    refused_since_log: u64,
    logged: Option<Instant>,
}

impl OverLimit {
    /// Closes a connection accepted while every permit is taken: its audit event and metric
    /// say `connection_limit`, and a warning is logged at most once a second with the count.
    fn refuse<S>(&mut self, stream: S, peer: SocketAddr, routes: &Routes, telemetry: &Telemetry) {
        drop(stream);
        let names = routes
            .endpoints()
            .iter()
            .map(|endpoint| endpoint.config.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let reason = HandshakeRefusal::ConnectionLimit;
        telemetry.handshake_refused(&names, peer, reason, &Presented::default());
        self.refused_since_log += 1;
        if self
            .logged
            .is_none_or(|logged| logged.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                reason = reason.as_str(),
                refused = self.refused_since_log,
                "connection refused: max_connections client connections are open; raise \
                 max_connections if the machine can serve more"
            );
            self.refused_since_log = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_from(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Resolves once a reload retires the listener; never when the reloader is gone, since then
/// nothing can retire it.
async fn retired(mut retired: watch::Receiver<bool>) {
    if retired.wait_for(|retired| *retired).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once shutdown begins (or the gateway is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    // The guard wait_for returns is not Send, so it is dropped here rather than held by a caller.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Runs the handshake, then serves the client until the connection ends.
///
/// Every phase is boxed: a task holds its future inline for as long as the connection lives,
/// so an idle keep-alive connection would otherwise carry the handshake's state and the largest
/// of the handlers' states (several KiB) for minutes. Boxed, the handshake's memory is returned
/// when it ends and each connection holds only its own handler's state: a relayed connection
/// does not carry the 9 KiB an HTTP connection's state takes (massif, an edge relaying 400 idle
/// connections: the task of each went from 9.6 KiB to 3.3 KiB, then to 0.5 KiB with the phase
/// made in one statement).
async fn handle_connection<S: ClientStream>(
    stream: S,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    routes: Arc<Routes>,
    telemetry: Telemetry,
    stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    // The next phase is made within this one statement: a binding of the arrival (which holds
    // the TLS connection inline, 3 KiB) would keep its storage in this future while the phase
    // runs, since the compiler keeps a moved-from local's space until its scope ends.
    let phase: Pin<Box<dyn Future<Output = ()> + Send + '_>> =
        match Box::pin(establish(stream, peer_addr, local_addr, &routes, started)).await {
            Ok(Arrival::Relayed(relayed)) => {
                let client = RelayedClient {
                    peer: peer_addr,
                    local: local_addr,
                    sni: relayed.sni.clone(),
                };
                Box::pin(relayed.serve(client, &telemetry, started))
            }
            Ok(Arrival::Established(established)) => {
                let open = telemetry.handshake_accepted(
                    &established.info,
                    established.cipher_suite.as_deref(),
                    established.alpn.as_deref(),
                );
                Box::pin(established.serve(&telemetry, stopping, started, open))
            }
            Err(failed) => Box::pin(failed.report(&telemetry, peer_addr, &routes)),
        };
    phase.await;
}

impl<S: ClientStream> Relayed<S> {
    /// Sends the client's bytes, its ClientHello first, to the endpoint's relay target and
    /// copies both ways until the connection ends; TLS ends at the far side.
    async fn serve(self, client: RelayedClient, telemetry: &Telemetry, started: Instant) {
        let Relayed {
            stream,
            received,
            target,
            config,
            ..
        } = self;
        let connector = Arc::new(RelayConnection {
            target,
            client: std::sync::Mutex::new(Some(client)),
        });
        let forwarder = TcpForwarder::with_connector(&config, connector);
        let outcome = forwarder.forward_with_preamble(stream, &received).await;
        let (to_upstream, to_client) = (outcome.to_upstream, outcome.to_client);
        telemetry.forwarded_bytes(&config.name, to_upstream, to_client);
        tracing::info!(
            to_upstream,
            to_client,
            duration_ms = started.elapsed().as_millis() as u64,
            end = ?outcome.end,
            "relayed connection closed (TLS ended beyond this gateway)"
        );
    }
}

/// One relayed client's way to its target, as the forwarder's connector.
struct RelayConnection {
    target: Arc<dyn RelayTarget>,
    /// Taken by the one connection opened.
    client: std::sync::Mutex<Option<RelayedClient>>,
}

impl std::fmt::Debug for RelayConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.target.fmt(f)
    }
}

impl UpstreamConnector for RelayConnection {
    fn connect(&self) -> Connecting<'_> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match client {
            Some(client) => self.target.open(client),
            None => Box::pin(async {
                Err(std::io::Error::other(
                    "a relayed client connection is opened once",
                ))
            }),
        }
    }

    fn address(&self) -> &str {
        "relay"
    }
}

impl<S: ClientStream> Established<S> {
    /// Hands the connection to its endpoint's HTTP proxy or TCP forwarder until it ends.
    /// `_open` counts the connection as open until it is served to the end.
    async fn serve(
        self,
        telemetry: &Telemetry,
        stopping: watch::Receiver<bool>,
        started: Instant,
        _open: OpenConnection,
    ) {
        let Established {
            tls,
            info,
            config,
            handler,
            ..
        } = self;
        match handler {
            Handler::Http(proxy) => {
                proxy.serve_connection(tls, info, stopping).await;
                tracing::info!(
                    duration_ms = started.elapsed().as_millis() as u64,
                    "connection closed"
                );
            }
            // `establish` completes no handshake for these: they never get here.
            Handler::Relay(_) | Handler::Unrecognized => {}
            Handler::Tcp(forwarder) => {
                let preamble = config
                    .upstream_proxy_protocol
                    .map(|version| proxy_protocol::header(version, &info))
                    .unwrap_or_default();
                let outcome = Box::pin(forwarder.forward_with_preamble(tls, &preamble)).await;
                let duration_ms = started.elapsed().as_millis() as u64;
                let (to_upstream, to_client) = (outcome.to_upstream, outcome.to_client);
                telemetry.forwarded_bytes(&config.name, to_upstream, to_client);
                match outcome.end {
                    ForwardEnd::Closed => {
                        tracing::info!(to_upstream, to_client, duration_ms, "connection closed")
                    }
                    ForwardEnd::Failed(error) => tracing::info!(
                        to_upstream,
                        to_client,
                        duration_ms,
                        %error,
                        "connection closed: a side failed or reset it"
                    ),
                    ForwardEnd::Idle => tracing::info!(
                        to_upstream,
                        to_client,
                        duration_ms,
                        "connection closed: idle for longer than timeouts.idle"
                    ),
                    ForwardEnd::UpstreamUnreachable => {
                        tracing::info!(duration_ms, "connection closed: upstream unreachable")
                    }
                }
            }
        }
    }
}
