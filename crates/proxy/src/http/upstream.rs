//! The pooled HTTP/1.1 and HTTP/2 clients that carry requests to the upstream, plain or over
//! verified TLS, on connections its [`UpstreamConnector`] opens.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::ProxyError;
use super::request_body::ProgressBody;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::FixedServerNameResolver;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use moat_config::{EndpointConfig, UpstreamProtocol, UpstreamScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connector::{UpstreamConnector, UpstreamStream};

/// How long an unused pooled upstream connection is kept open for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The clients for one endpoint's upstream, plain or TLS; each keeps idle connections for reuse
/// (an HTTP/2 connection carries many requests at once, as many as the upstream allows).
#[derive(Clone, Debug)]
pub(super) struct UpstreamClient {
    /// HTTP/1.1 only: every request under `upstream_protocol = "http1"`, and WebSocket
    /// upgrades under every setting (an upgrade is an HTTP/1.1 mechanism).
    http1: Transport,
    /// Where requests that may go over HTTP/2 go (see [`UpstreamClient::route`]); `None`
    /// under `http1`.
    http2: Option<Transport>,
    protocol: UpstreamProtocol,
    scheme: UpstreamScheme,
}

/// Which of the [`UpstreamClient`]'s transports carries a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2: h2c by prior knowledge, or TLS whose ALPN offers h2 (and, under `auto`, lets
    /// the upstream pick http/1.1 instead).
    Http2,
}

/// A pooled client of one kind of connection.
#[derive(Clone, Debug)]
enum Transport {
    /// `http://` upstream.
    Plain(Client<Dial, ProgressBody>),
    /// `https://` upstream, verified against the endpoint's `upstream_ca`.
    Tls(Client<HttpsConnector<Dial>, ProgressBody>),
}

impl Transport {
    async fn send(
        &self,
        request: Request<ProgressBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Plain(client) => client.request(request).await,
            Self::Tls(client) => client.request(request).await,
        }
    }
}

/// The HTTP versions a transport offers the upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    Http1,
    /// HTTP/2 only: prior knowledge over plain TCP, ALPN `h2` alone over TLS.
    Http2,
    /// ALPN `h2` and `http/1.1` over TLS: the upstream picks.
    Either,
}

impl UpstreamClient {
    /// Builds the clients for `endpoint`'s upstream, reading `upstream_ca` for an `https://` one;
    /// their connections are opened by `connector`.
    pub(super) fn new(
        endpoint: &EndpointConfig,
        connector: Arc<dyn UpstreamConnector>,
    ) -> Result<Self, ProxyError> {
        let connector = Dial(connector);
        let scheme = endpoint.upstream.scheme;
        let tls = match scheme {
            UpstreamScheme::Http => None,
            UpstreamScheme::Https => {
                let ca_path = endpoint.upstream_ca.as_deref().ok_or_else(|| {
                    ProxyError::UpstreamCaMissing {
                        endpoint: endpoint.name.clone(),
                    }
                })?;
                // Requests to HTTP/2 upstreams name the client's host in `:authority`; the
                // certificate must still be the upstream's own.
                let host = endpoint
                    .upstream
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
                    ProxyError::InvalidUpstream {
                        endpoint: endpoint.name.clone(),
                        address: endpoint.upstream.host.clone(),
                    }
                })?;
                Some((tls_config(ca_path)?, server_name))
            }
            UpstreamScheme::Tcp => {
                return Err(ProxyError::NotHttpUpstream {
                    endpoint: endpoint.name.clone(),
                });
            }
        };
        let transport = |offer: Offer| match &tls {
            None => Transport::Plain(client_builder(offer).build(connector.clone())),
            Some((config, server_name)) => {
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config.clone())
                    .https_only()
                    .with_server_name_resolver(FixedServerNameResolver::new(server_name.clone()));
                let https = match offer {
                    Offer::Http1 => builder.enable_http1().wrap_connector(connector.clone()),
                    Offer::Http2 => builder.enable_http2().wrap_connector(connector.clone()),
                    Offer::Either => builder
                        .enable_http1()
                        .enable_http2()
                        .wrap_connector(connector.clone()),
                };
                Transport::Tls(client_builder(offer).build(https))
            }
        };
        let protocol = endpoint.upstream_protocol;
        let http2 = match (protocol, scheme) {
            (UpstreamProtocol::Http1, _) => None,
            (UpstreamProtocol::Http2, _) | (UpstreamProtocol::Auto, UpstreamScheme::Http) => {
                Some(transport(Offer::Http2))
            }
            (UpstreamProtocol::Auto, _) => Some(transport(Offer::Either)),
        };
        Ok(Self {
            http1: transport(Offer::Http1),
            http2,
            protocol,
            scheme,
        })
    }

    /// The transport for a request: WebSocket upgrades go over HTTP/1.1; under `auto`, a plain
    /// upstream gets HTTP/2 only for a client's HTTP/2 gRPC request (h2c needs prior knowledge,
    /// which an HTTP/1.1 service would not understand) and a TLS upstream picks by ALPN.
    pub(super) fn route(&self, grpc_over_http2: bool, websocket: bool) -> Route {
        match (self.protocol, self.scheme) {
            _ if websocket || self.http2.is_none() => Route::Http1,
            (UpstreamProtocol::Auto, UpstreamScheme::Http) if !grpc_over_http2 => Route::Http1,
            _ => Route::Http2,
        }
    }

    /// Sends `request` on a pooled (or new) connection of `route` and returns the response
    /// head.
    pub(super) async fn send(
        &self,
        request: Request<ProgressBody>,
        route: Route,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match (route, &self.http2) {
            (Route::Http2, Some(http2)) => http2.send(request).await,
            _ => self.http1.send(request).await,
        }
    }
}

/// A pool builder for connections that offer `offer`.
fn client_builder(offer: Offer) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .http2_only(offer == Offer::Http2)
        // A gRPC stream may be quiet for minutes: PING the upstream meanwhile, so that a dead
        // connection is noticed (every 30 s, 20 s to answer) and NATs keep the flow.
        .http2_keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(false)
        .timer(TokioTimer::new());
    builder
}

/// How often an HTTP/2 upstream connection with requests in flight is PINGed.
const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the upstream may take to answer that PING before the connection is closed.
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The connector as hyper's pool calls it: every new connection comes from the endpoint's
/// [`UpstreamConnector`], whatever the request's URI says (it always names the upstream).
#[derive(Clone, Debug)]
pub(super) struct Dial(Arc<dyn UpstreamConnector>);

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<DialedStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<DialedStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let connector = Arc::clone(&self.0);
        Box::pin(async move {
            let stream = connector.connect().await?;
            Ok(TokioIo::new(DialedStream(stream)))
        })
    }
}

/// A connection the [`UpstreamConnector`] opened, as hyper's pool holds it.
pub(super) struct DialedStream(UpstreamStream);

impl Connection for DialedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for DialedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for DialedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A rustls client configuration that trusts exactly the certificates in `ca_path`.
fn tls_config(ca_path: &Path) -> Result<rustls::ClientConfig, ProxyError> {
    let pem = std::fs::read(ca_path).map_err(|source| ProxyError::UpstreamCaRead {
        path: ca_path.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for (index, certificate) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let certificate = certificate.map_err(|err| ProxyError::UpstreamCaInvalid {
            path: ca_path.to_path_buf(),
            position: index + 1,
            reason: err.to_string(),
        })?;
        roots
            .add(certificate)
            .map_err(|err| ProxyError::UpstreamCaInvalid {
                path: ca_path.to_path_buf(),
                position: index + 1,
                reason: err.to_string(),
            })?;
    }
    if roots.is_empty() {
        return Err(ProxyError::UpstreamCaEmpty {
            path: ca_path.to_path_buf(),
        });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // ALPN (`h2`, `http/1.1`) is set by the connector builders.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ProxyError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The upstream's response body for the client connection, cut off when the upstream sends
/// nothing for `stall_timeout` while the client waits for more (like nginx's `proxy_read_timeout`),
/// so a hung upstream cannot hold a client connection open forever.
pub(super) fn upstream_body(
    body: Incoming,
    stall_timeout: Duration,
    endpoint: &str,
) -> super::ProxyBody {
    StallGuardedBody {
        inner: body,
        stall_timeout,
        deadline: None,
        endpoint: endpoint.to_owned(),
    }
    .boxed()
}

/// The upstream went silent in the middle of a response body.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent no response data for {} ms; response cut off", .0.as_millis())]
struct UpstreamStalled(Duration);

/// See [`upstream_body`]. The deadline runs only while the client is waiting for data, so a slow
/// reader (backpressure) never counts against the upstream.
struct StallGuardedBody {
    inner: Incoming,
    stall_timeout: Duration,
    /// Armed when a poll found no data; disarmed by every frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    endpoint: String,
}

impl Body for StallGuardedBody {
    type Data = Bytes;
    type Error = super::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline = None;
                if let Some(Err(error)) = &frame {
                    // The client sees a response cut short; the operator should see why.
                    tracing::warn!(
                        endpoint = %this.endpoint,
                        %error,
                        cause = std::error::Error::source(error)
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        "upstream response cut short: the upstream closed or broke the \
                         connection before the end of its body"
                    );
                }
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                let stall_timeout = this.stall_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall_timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    tracing::warn!(
                        endpoint = %this.endpoint,
                        timeout_ms = stall_timeout.as_millis(),
                        "upstream stalled mid-response; cutting the response off"
                    );
                    this.deadline = None;
                    return Poll::Ready(Some(Err(Box::new(UpstreamStalled(stall_timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
