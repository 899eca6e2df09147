//! The gateway: binds every endpoint, accepts TLS connections, and hands each one to its
//! endpoint's HTTP proxy or TCP forwarder until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_config::{Config, EndpointConfig, EndpointKind};
use moat_trust::{ClientIdentity, RefusalReason};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::access::{HANDSHAKE, HandshakeFacts};
use crate::connection::ConnectionInfo;
use crate::error::GatewayError;
use crate::http_proxy::HttpProxy;
use crate::tcp_forward::{ForwardEnd, TcpForwarder};
use crate::tls;

/// How long in-flight connections may take to finish after shutdown begins; whatever is still
/// open then is closed, so a stuck client cannot keep moat from exiting.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Settings of the process rather than of an endpoint.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// moat's data directory (`$MOAT_HOME`, else `$XDG_DATA_HOME/moat`, else
    /// `~/.local/share/moat`); its local CA lives here.
    pub moat_home: PathBuf,
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
    endpoints: Vec<ListeningEndpoint>,
}

/// One endpoint's socket, TLS setup and connection handler.
struct ListeningEndpoint {
    config: Arc<EndpointConfig>,
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    handler: Handler,
    local_ca: Option<PathBuf>,
}

/// What happens to a connection after its handshake.
#[derive(Clone)]
enum Handler {
    Http(Arc<HttpProxy>),
    Tcp(Arc<TcpForwarder>),
}

impl Gateway {
    /// Loads every endpoint's certificates, CAs and CRLs and binds its listener (port 0 picks a
    /// free port). Any error is a startup error naming the file and the fix; on error nothing
    /// stays bound.
    pub async fn bind(config: &Config, options: &GatewayOptions) -> Result<Gateway, GatewayError> {
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let tls = tls::endpoint_tls(endpoint, &options.moat_home)?;
            let handler = match endpoint.kind {
                EndpointKind::Http => {
                    Handler::Http(Arc::new(HttpProxy::new(endpoint).map_err(|source| {
                        GatewayError::Proxy {
                            endpoint: endpoint.name.clone(),
                            source: Box::new(source),
                        }
                    })?))
                }
                EndpointKind::Tls => Handler::Tcp(Arc::new(TcpForwarder::new(endpoint))),
            };
            let bind_error = |source| GatewayError::Bind {
                endpoint: endpoint.name.clone(),
                address: endpoint.listen,
                source,
            };
            let listener = TcpListener::bind(endpoint.listen)
                .await
                .map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            log_endpoint_ready(endpoint, local_addr);
            endpoints.push(ListeningEndpoint {
                config: Arc::new(endpoint.clone()),
                listener,
                local_addr,
                acceptor: TlsAcceptor::from(tls.config),
                handler,
                local_ca: tls.local_ca,
            });
        }
        Ok(Gateway { endpoints })
    }

    /// The bound endpoints, in configuration order.
    pub fn endpoints(&self) -> Vec<BoundEndpoint> {
        self.endpoints
            .iter()
            .map(|endpoint| {
                let scheme = match endpoint.config.kind {
                    EndpointKind::Http => "https",
                    EndpointKind::Tls => "tls",
                };
                BoundEndpoint {
                    name: endpoint.config.name.clone(),
                    kind: endpoint.config.kind,
                    local_addr: endpoint.local_addr,
                    url: format!(
                        "{scheme}://{}:{}",
                        endpoint.config.domain,
                        endpoint.local_addr.port()
                    ),
                    local_ca: endpoint.local_ca.clone(),
                }
            })
            .collect()
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
        for endpoint in self.endpoints {
            loops.spawn(accept_loop(endpoint, stopping.clone()));
        }
        shutdown.await;
        tracing::info!("shutting down: no new connections; letting in-flight ones finish");
        let _ = stop.send(true);
        while loops.join_next().await.is_some() {}
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// One line per endpoint at startup saying what it enforces, so an operator can check the
/// running setup against the intended one.
fn log_endpoint_ready(endpoint: &EndpointConfig, local_addr: SocketAddr) {
    let upstream = format!("{}:{}", endpoint.upstream.host, endpoint.upstream.port);
    tracing::info!(
        endpoint = %endpoint.name,
        kind = ?endpoint.kind,
        listen = %local_addr,
        domain = %endpoint.domain,
        upstream = %upstream,
        upstream_scheme = ?endpoint.upstream.scheme,
        client_auth = ?endpoint.client_auth,
        ca_files = endpoint.mutual_tls_cas.len(),
        crl_files = endpoint.crls.len(),
        tls_min_version = ?endpoint.tls_min_version,
        "endpoint ready"
    );
    if endpoint.mutual_tls_cas.is_empty() {
        tracing::warn!(
            endpoint = %endpoint.name,
            "no client certificate is asked for: any client may connect; pass --mutual-tls-cas \
             (mutual_tls_cas in the config) to require one"
        );
    }
    if endpoint.kind == EndpointKind::Tls {
        // Until the edge/agent tunnel exists this process is both, so TLS ends here either way.
        tracing::info!(
            endpoint = %endpoint.name,
            terminate_at = ?endpoint.terminate_at,
            "TLS terminates in this process (no separate edge yet)"
        );
    }
}

/// Accepts connections of one endpoint until shutdown, then drains them.
async fn accept_loop(endpoint: ListeningEndpoint, stopping: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let stop_signal = stopped(stopping.clone());
    tokio::pin!(stop_signal);
    let name = endpoint.config.name.clone();
    loop {
        tokio::select! {
            accepted = endpoint.listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::info_span!("connection", endpoint = %name, peer = %peer);
                    let connection = handle_connection(
                        stream,
                        peer,
                        endpoint.local_addr,
                        Arc::clone(&endpoint.config),
                        endpoint.acceptor.clone(),
                        endpoint.handler.clone(),
                        stopping.clone(),
                    );
                    connections.spawn(connection.instrument(span));
                }
                Err(error) => {
                    // Usually out of file descriptors; pausing lets connections close.
                    tracing::error!(endpoint = %name, %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
            _ = &mut stop_signal => break,
        }
    }
    drop(endpoint.listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(endpoint = %name, open, "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            endpoint = %name,
            closed = connections.len(),
            "closing connections still open after the drain deadline"
        );
        connections.shutdown().await;
    }
}

/// Resolves once shutdown begins (or the gateway is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    // The guard wait_for returns is not Send, so it is dropped here rather than held by a caller.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Runs the TLS handshake of one client (bounded by `timeouts.request_header`), then serves it.
async fn handle_connection(
    stream: TcpStream,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    config: Arc<EndpointConfig>,
    acceptor: TlsAcceptor,
    handler: Handler,
    stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let facts = Arc::new(HandshakeFacts {
        peer: peer_addr,
        local: local_addr,
        sni: std::sync::Mutex::new(None),
    });
    let handshake = tokio::time::timeout(
        config.timeouts.request_header,
        HANDSHAKE.scope(facts, acceptor.accept(stream).into_fallible()),
    );
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err((error, socket))) => {
            log_refused_handshake(&error);
            linger_after_alert(socket).await;
            return;
        }
        Err(_) => {
            tracing::warn!(
                reason = "handshake_timeout",
                timeout_ms = config.timeouts.request_header.as_millis() as u64,
                "handshake refused: the client did not finish the TLS handshake in time"
            );
            return;
        }
    };

    let (_, session) = tls.get_ref();
    let client = match session.peer_certificates() {
        Some(chain) if !chain.is_empty() => match ClientIdentity::from_chain(chain) {
            Ok(identity) => Some(Arc::new(identity)),
            Err(error) => {
                // The verifier accepted it, so this is not expected; refuse rather than forward
                // a connection whose identity cannot be told upstream.
                tracing::warn!(reason = "malformed", %error, "connection closed: cannot read the verified client certificate");
                return;
            }
        },
        _ => None,
    };
    let info = ConnectionInfo {
        endpoint: config.name.clone(),
        peer_addr,
        local_addr,
        sni: session.server_name().map(str::to_string),
        tls_version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        },
        http2: session.alpn_protocol() == Some(b"h2"),
        client,
    };
    let subject = info.client.as_ref().map(|client| client.subject.clone());
    tracing::info!(
        tls_version = info.tls_version,
        alpn = if info.http2 { "h2" } else { "http/1.1" },
        sni = info.sni.as_deref().unwrap_or(""),
        client_subject = subject.as_deref().unwrap_or(""),
        client_serial = info
            .client
            .as_ref()
            .map(|c| c.serial_hex.as_str())
            .unwrap_or(""),
        "connection accepted"
    );

    match handler {
        Handler::Http(proxy) => {
            proxy.serve_connection(tls, info, stopping).await;
            tracing::info!(
                duration_ms = started.elapsed().as_millis() as u64,
                "connection closed"
            );
        }
        Handler::Tcp(forwarder) => {
            let outcome = forwarder.forward(tls).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            let (to_upstream, to_client) = (outcome.to_upstream, outcome.to_client);
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

/// How long a refused client's remaining bytes are read and discarded after the alert.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Closes a refused connection so that the client reads the alert: sends FIN after it, then
/// discards what the client still sends (its Finished, often its first request) for a moment.
/// Closing a socket with unread bytes makes the kernel send RST, and a client that receives RST
/// may drop the alert unread and report "connection reset" instead of the refusal's reason.
async fn linger_after_alert(mut socket: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = socket.shutdown().await;
    let mut discard = [0u8; 4096];
    let _ = tokio::time::timeout(ALERT_LINGER, async {
        while let Ok(read) = socket.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

/// One log line for a handshake that failed. Certificate refusals were already logged by the
/// verifier with the certificate's subject, issuer and serial (inside this connection's span),
/// so only the failures it never saw are logged here.
fn log_refused_handshake(error: &std::io::Error) {
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(tls_error) => {
            let reason = RefusalReason::from_io_error(error)
                .map(|reason| reason.as_str())
                .unwrap_or("tls_error");
            tracing::warn!(reason, error = %tls_error, "handshake refused");
        }
        None => {
            tracing::info!(%error, "connection closed during the handshake");
        }
    }
}
