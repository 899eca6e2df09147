//! The HTTP reverse proxy behind an `http` endpoint: forwards requests upstream with the client's identity.
//!
//! One [`HttpProxy`] serves every connection of an endpoint. Per request it:
//! - turns the request-target into its one canonical path ([`canonical`]) and checks the host
//!   (400 when either is malformed, 421 when the host is another endpoint's on an address the
//!   SNI shares out), so that rules judge exactly what the upstream receives;
//! - refuses a client without a certificate when the endpoint asks for one (403 page), or, when
//!   the endpoint has access rules, whatever the first rule covering the host and path refuses
//!   (403 page naming the rule);
//! - removes hop-by-hop headers (RFC 9110 7.6.1) and any identity or forwarding header the
//!   client sent (in every spelling: `_` reads as `-`), then adds the verified certificate
//!   (RFC 9440 `Client-Cert`, `Client-Cert-Chain`, readable `Moat-Client-*`) and the forwarding
//!   headers (`X-Forwarded-For/-Proto/-Host`, `Forwarded`), which name only what moat saw;
//! - sends the host the client addressed (`:authority`, absolute-form target, else `Host`) as
//!   `Host`, so name-based upstreams work;
//! - speaks HTTP/1.1 or HTTP/2 (gRPC; `upstream_protocol`) to the upstream over pooled
//!   connections, streaming bodies and trailers both ways;
//! - passes WebSocket upgrades through as a byte tunnel after `101 Switching Protocols`, and
//!   removes any other `Upgrade` (an `h2c` switch would carry requests no rule judges); an
//!   HTTP/2 client's WebSocket (RFC 8441 extended CONNECT) reaches the upstream as an HTTP/1.1
//!   upgrade ([`extended_connect`]);
//! - cuts off a request body that arrives more slowly than `timeouts.request_body` allows (408);
//! - answers 502 when the upstream cannot be reached and 504 when it stays silent longer than
//!   `timeouts.upstream_response` (counted from the last progress, so long uploads are fine), and
//!   cuts a response body off when the upstream goes silent that long in the middle of it.

mod activity;
mod admission;
pub mod canonical;
mod extended_connect;
mod forward;
mod headers;
mod host;
mod http1;
pub mod inspect;
mod pages;
mod prefixed;
mod request_body;
mod upgrade;
mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::combinators::BoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat_config::{EndpointConfig, UpstreamScheme};
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::watch;

use crate::connector::{TcpConnector, UpstreamConnector};
use activity::{Activity, ClientLimits, ObservedIo, Verdict};
use forward::ConnectionContext;
use moat_telemetry::ConnectionInfo;
use moat_telemetry::Telemetry;
use request_body::BodyLimits;
use upstream::UpstreamClient;

/// Why a response body stopped early: the upstream connection failed or went silent.
type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Response bodies sent to clients: the upstream's streamed body or one of moat's own pages.
type ProxyBody = BoxBody<Bytes, BodyError>;

/// Why an endpoint's proxy could not be built (the gateway's error names the endpoint).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// An `https://` upstream needs a CA to verify it; moat uses no system roots.
    #[error(
        "the upstream is https:// but no upstream CA is set; set the endpoint's upstream_ca to \
         the CA that signed the upstream's certificate"
    )]
    UpstreamCaMissing {
        /// The endpoint's name.
        endpoint: String,
    },
    /// The upstream CA file could not be read.
    #[error("{path}: cannot read the upstream CA file: {source}; check the path and its permissions", path = path.display())]
    UpstreamCaRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate in the upstream CA file is malformed or unusable as a trust anchor.
    #[error("{path}: certificate #{position} cannot be used as an upstream CA: {reason}; replace it with a PEM CA certificate", path = path.display())]
    UpstreamCaInvalid {
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        position: usize,
        /// What was wrong.
        reason: String,
    },
    /// The upstream CA file holds no PEM certificate.
    #[error("{path}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----); give the CA that signed the upstream's certificate", path = path.display())]
    UpstreamCaEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The endpoint forwards raw TCP, which this proxy does not do.
    #[error(
        "the upstream is a raw TCP address; use a tls endpoint for it or give an http:// or https:// upstream"
    )]
    NotHttpUpstream {
        /// The endpoint's name.
        endpoint: String,
    },
    /// The upstream host and port do not form a valid HTTP authority.
    #[error(
        "upstream address {address} is not a valid host:port; give e.g. 127.0.0.1:8080 or app.internal:8080"
    )]
    InvalidUpstream {
        /// The endpoint's name.
        endpoint: String,
        /// The address as written.
        address: String,
    },
    /// The client CA files, which access rules name CAs from, could not be read.
    #[error("{source}")]
    ClientCas {
        /// The endpoint's name.
        endpoint: String,
        /// What was wrong with the files (names the file and the fix).
        source: moat_trust::TrustError,
    },
    /// rustls refused the upstream TLS configuration.
    #[error("upstream TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
}

/// The reverse proxy of one `http` endpoint; cheap to share in an `Arc` across its connections,
/// which share its pool of upstream connections.
#[derive(Debug)]
pub struct HttpProxy {
    client: UpstreamClient,
    upstream_scheme: Scheme,
    upstream_authority: Authority,
    /// True when the endpoint trusts CAs for client certificates (so a client must present one).
    asks_for_certificate: bool,
    /// Access rules; when there are any, they decide instead of `asks_for_certificate`.
    rules: Vec<moat_policy::Rule>,
    /// The client CAs, for rules naming a CA file (`issuer = "cas.pem"`); only read when a rule
    /// has an issuer selector.
    client_cas: Option<moat_trust::CaBundle>,
    upstream_response_timeout: Duration,
    client_limits: ClientLimits,
    /// How slowly a client may send a request body.
    body_limits: BodyLimits,
    /// The hostname the endpoint serves: on an address several endpoints share, a request's
    /// host must be this one (421 otherwise).
    domain: String,
    /// Where each finished request's audit event and metrics go.
    telemetry: Telemetry,
    /// True for an edge's stand-in for endpoints no agent publishes now: every request is
    /// answered 404 "endpoint offline" and nothing is dialed.
    offline: bool,
    /// Sees every exchange (`moat http --inspect`); `None` costs nothing.
    observer: Option<Arc<dyn inspect::RequestObserver>>,
    /// True on an agent relaying an edge's connection (TLS ended at the edge): the requests
    /// carry the identity and forwarding headers the edge set for the client it verified, and
    /// they pass as they are. Set only for connections that are the edge's.
    relayed_from_edge: bool,
}

impl HttpProxy {
    /// Builds the proxy for `endpoint`, dialing its upstream over TCP and reading its
    /// `upstream_ca` when the upstream is `https://`.
    pub fn new(endpoint: &EndpointConfig) -> Result<HttpProxy, ProxyError> {
        HttpProxy::with_connector(endpoint, TcpConnector::to_upstream_of(endpoint))
    }

    /// Builds the proxy for `endpoint`, whose upstream connections `connector` opens (the
    /// requests still name the endpoint's upstream in `Host`, and TLS to an `https://` upstream
    /// still verifies its name).
    pub fn with_connector(
        endpoint: &EndpointConfig,
        connector: Arc<dyn UpstreamConnector>,
    ) -> Result<HttpProxy, ProxyError> {
        let client = UpstreamClient::new(endpoint, connector)?;
        let client_cas = if !moat_policy::rules_use_issuer(&endpoint.rules) {
            None
        } else {
            Some(
                moat_trust::CaBundle::from_files(&endpoint.mutual_tls_cas).map_err(|source| {
                    ProxyError::ClientCas {
                        endpoint: endpoint.name.clone(),
                        source,
                    }
                })?,
            )
        };
        let upstream_scheme = match endpoint.upstream.scheme {
            UpstreamScheme::Https => Scheme::HTTPS,
            _ => Scheme::HTTP,
        };
        let host = &endpoint.upstream.host;
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", endpoint.upstream.port)
        } else {
            format!("{host}:{}", endpoint.upstream.port)
        };
        let upstream_authority =
            Authority::try_from(authority.as_str()).map_err(|_| ProxyError::InvalidUpstream {
                endpoint: endpoint.name.clone(),
                address: authority.clone(),
            })?;
        Ok(HttpProxy {
            client,
            upstream_scheme,
            upstream_authority,
            asks_for_certificate: !endpoint.mutual_tls_cas.is_empty(),
            rules: endpoint.rules.clone(),
            client_cas,
            upstream_response_timeout: endpoint.timeouts.upstream_response,
            client_limits: ClientLimits {
                request_header: endpoint.timeouts.request_header,
                idle: endpoint.timeouts.idle,
            },
            body_limits: BodyLimits {
                timeout: endpoint.timeouts.request_body,
                min_rate: endpoint.timeouts.request_body_min_rate,
            },
            domain: endpoint.domain.clone(),
            telemetry: Telemetry::default(),
            offline: false,
            observer: None,
            relayed_from_edge: false,
        })
    }

    /// The proxy an edge serves for hostnames whose agent is gone: it answers every request
    /// with 404 "endpoint offline" naming the host (JSON when the client asks for it), audited
    /// like any request, and never dials `endpoint`'s upstream.
    pub fn offline(endpoint: &EndpointConfig) -> Result<HttpProxy, ProxyError> {
        let mut proxy = HttpProxy::new(endpoint)?;
        proxy.offline = true;
        Ok(proxy)
    }

    /// The admission settings of this endpoint.
    fn admitter(&self) -> admission::Admitter<'_> {
        admission::Admitter {
            rules: &self.rules,
            asks_for_certificate: self.asks_for_certificate,
            client_cas: self.client_cas.as_ref(),
        }
    }

    /// Reports each request's audit event and metrics to `telemetry` (by default they go to a
    /// registry nobody reads, and no audit event is written).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> HttpProxy {
        self.telemetry = telemetry;
        self
    }

    /// The proxy an agent runs, only to show the inspector what passes, on the connections an
    /// edge opens for an endpoint whose TLS ends at the edge: the edge admitted each request
    /// and wrote its client's identity and address into its headers, which reach the upstream
    /// unchanged (`endpoint` should carry no rules or CAs: the edge applied them).
    pub fn relayed_from_edge(mut self) -> HttpProxy {
        self.relayed_from_edge = true;
        self
    }

    /// Hands every finished exchange to `observer` (the request inspector).
    pub fn with_observer(
        mut self,
        observer: Option<Arc<dyn inspect::RequestObserver>>,
    ) -> HttpProxy {
        self.observer = observer;
        self
    }

    /// Serves HTTP/1.1 or HTTP/2 (`info.http2`, from ALPN) on an already-authenticated connection
    /// until it closes or `shutdown` flips to true (then finishes in-flight requests gracefully).
    /// Closes the connection when a request's headers take longer than `timeouts.request_header`
    /// or it sits idle longer than `timeouts.idle`.
    pub async fn serve_connection<IO>(
        self: Arc<Self>,
        mut io: IO,
        info: ConnectionInfo,
        shutdown: watch::Receiver<bool>,
    ) where
        IO: AsyncBufRead + AsyncWrite + Unpin + Send + 'static,
    {
        // hyper's connection allocates its read and write buffers (8 KiB each) up front; like
        // nginx, a connection costs them only once the client sends something, so that idle
        // connections (a pool of keep-alive clients, a client between bursts) stay cheap.
        let connected = tokio::time::Instant::now();
        let mut watch_shutdown = shutdown.clone();
        let arrived = tokio::select! {
            arrived = first_bytes(&mut io) => arrived,
            () = tokio::time::sleep(self.client_limits.request_header) => {
                tracing::debug!(endpoint = %info.endpoint, peer = %info.peer_addr, "no request within the header timeout; closing");
                false
            }
            () = shutdown_requested(&mut watch_shutdown) => false,
        };
        if arrived {
            self.serve_requests(io, info, shutdown, connected).await;
        }
    }

    /// Runs hyper on a connection whose client has started sending; its first request's headers
    /// are still due `timeouts.request_header` after `connected`. The future is boxed and
    /// holds only the chosen protocol's connection: it lives as long as the client stays
    /// connected, so its size is memory every open connection keeps.
    fn serve_requests<IO>(
        self: Arc<Self>,
        io: IO,
        info: ConnectionInfo,
        shutdown: watch::Receiver<bool>,
        connected: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>
    where
        IO: AsyncBufRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http2 = info.http2;
        let activity = Activity::new(!http2, self.client_limits, connected);
        let supervision = Supervision {
            endpoint: info.endpoint.clone(),
            peer: info.peer_addr,
            http2,
            activity: Arc::clone(&activity),
            shutdown: shutdown.clone(),
        };
        let client_address = headers::ClientAddress::of(info.peer_addr);
        let context = Arc::new(ConnectionContext {
            info: Arc::new(info),
            activity: Arc::clone(&activity),
            shutdown,
            identity_headers: std::sync::Mutex::new(None),
            client_address,
            upgrade: upgrade::UpgradeSlot::default(),
        });
        let proxy = self;
        let connection_context = Arc::clone(&context);
        // Each request's future is boxed: hyper's HTTP/1 connection keeps a slot the size of the
        // service's future, and ending hyper between requests needs it to be `Unpin`.
        let service = service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let context = Arc::clone(&context);
            Box::pin(async move {
                let request = request.map(request_body::ClientBody::Incoming);
                Ok::<_, Infallible>(forward::handle(proxy, context, request).await)
            })
        });

        // ALPN decided the protocol; the activity tracking relies on knowing it.
        if http2 {
            let io = TokioIo::new(ObservedIo::new(io, activity));
            // Extended CONNECT (RFC 8441): WebSockets over HTTP/2.
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .enable_connect_protocol()
                .serve_connection(io, service);
            Box::pin(supervision.run(connection))
        } else {
            let connection = http1::Http1Connection::new(io, service, connection_context);
            Box::pin(supervision.run(connection))
        }
    }
}

/// A hyper server connection of either protocol, as [`Supervision`] drives it.
trait ServerConnection: Future<Output = hyper::Result<()>> + Send {
    /// Stops taking new requests and ends once those in flight are answered.
    fn graceful_shutdown(self: Pin<&mut Self>);

    /// Gives back the memory hyper holds for an idle connection, when it can; the connection
    /// stays open.
    fn release_if_idle(self: Pin<&mut Self>) {}
}

impl<I, S, E> ServerConnection for hyper::server::conn::http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: 'static + Send,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody> + Send,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// What watches a client connection besides hyper: the header and idle timeouts and shutdown.
struct Supervision {
    endpoint: String,
    peer: std::net::SocketAddr,
    http2: bool,
    activity: Arc<Activity>,
    shutdown: watch::Receiver<bool>,
}

impl Supervision {
    /// Drives `connection` to its end, closing it on a timeout or at shutdown.
    async fn run(self, connection: impl ServerConnection) {
        let Supervision {
            endpoint,
            peer,
            http2,
            activity,
            mut shutdown,
        } = self;
        tokio::pin!(connection);
        let stop = shutdown_requested(&mut shutdown);
        tokio::pin!(stop);
        let look_again = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(look_again);
        let mut closing = false;
        loop {
            if closing {
                if let Err(err) = connection.as_mut().await {
                    tracing::debug!(endpoint = %endpoint, peer = %peer, error = %err, "connection ended with an error");
                }
                return;
            }
            match activity.next_check(tokio::time::Instant::now()) {
                Ok(next) => look_again.as_mut().reset(next),
                Err(Verdict::HeaderTimeout) => {
                    tracing::debug!(endpoint = %endpoint, peer = %peer, "request headers not received in time; closing");
                    if http2 {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        continue;
                    }
                    // An HTTP/1 connection mid-header has nothing to finish; drop it.
                    return;
                }
                Err(Verdict::Release) => {
                    connection.as_mut().release_if_idle();
                    continue;
                }
                Err(_) => {
                    tracing::debug!(endpoint = %endpoint, peer = %peer, "idle connection closed");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    continue;
                }
            }
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(endpoint = %endpoint, peer = %peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = &mut stop => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = activity.changed() => {}
                () = &mut look_again => {}
            }
        }
    }
}

/// Waits until the client's first bytes can be read, leaving them buffered; false when the
/// client closed (or the connection failed) first.
async fn first_bytes<IO: AsyncBufRead + Unpin>(io: &mut IO) -> bool {
    std::future::poll_fn(|cx| {
        Pin::new(&mut *io)
            .poll_fill_buf(cx)
            .map(|filled| filled.is_ok_and(|data| !data.is_empty()))
    })
    .await
}

/// Resolves once the gateway asks to stop; never, if the sender is gone without asking.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
