//! One endpoint loaded and ready for connections: its configuration, TLS setup and handler.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use moat_config::{CrlExpiredPolicy, EndpointConfig, EndpointKind};
use rustls_pki_types::UnixTime;

use crate::error::GatewayError;
use crate::tls::{self, IssuedCredentials, ServerTls};
use crate::upstream_route::{RelayTarget, UpstreamRoute};
use moat_proxy::http::HttpProxy;
use moat_proxy::http::inspect::RequestObserver;
use moat_proxy::tcp_forward::TcpForwarder;
use moat_telemetry::Telemetry;

/// What happens to a connection once its ClientHello picked the endpoint.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Handshake, then reverse-proxy HTTP requests.
    Http(Arc<HttpProxy>),
    /// Handshake, then forward the decrypted byte stream.
    Tcp(Arc<TcpForwarder>),
    /// No handshake here: relay the client's bytes, ClientHello included.
    Relay(Arc<dyn RelayTarget>),
    /// No handshake: refuse with `unrecognized_name` (a tls endpoint nobody serves now).
    Unrecognized,
}

/// One endpoint as loaded from its files. A reload builds new ones and swaps them in;
/// connections already accepted keep the one they started with.
pub(crate) struct LoadedEndpoint {
    /// The validated configuration.
    pub config: Arc<EndpointConfig>,
    /// Certificate, versions, ALPN, client verifier, session cache and ticket keys; `None`
    /// when TLS does not end here (relayed or refused endpoints).
    pub tls: Option<ServerTls>,
    /// The HTTP proxy or TCP forwarder.
    pub handler: Handler,
    /// The local CA certificate to trust, when moat issued the server certificate.
    pub local_ca: Option<PathBuf>,
    /// The loaded CRLs, checked for staleness on a timer.
    pub crls: moat_trust::RevocationLists,
    /// Reused by the next reload when the domain stays the same.
    issued: Option<IssuedCredentials>,
    /// The server certificate moat's local CA issued, whose expiry is tracked like a file's.
    pub issued_leaf: Option<rustls_pki_types::CertificateDer<'static>>,
    /// A digest of each file read, so a reload can tell which files changed.
    pub file_digests: BTreeMap<PathBuf, Option<u64>>,
}

impl LoadedEndpoint {
    /// Loads `config`'s certificate, CAs and CRLs and builds its handler for `route` (`None`:
    /// its upstream over TCP). `previous` is the same endpoint's last load, whose locally
    /// issued certificate is reused; the handler reports to `telemetry` (and an HTTP one its
    /// exchanges to `observer`).
    pub(crate) fn load(
        config: &EndpointConfig,
        moat_home: &Path,
        previous: Option<&LoadedEndpoint>,
        telemetry: &Telemetry,
        observer: Option<&Arc<dyn RequestObserver>>,
        route: Option<UpstreamRoute>,
    ) -> Result<LoadedEndpoint, GatewayError> {
        let file_digests = digest_files(config);
        telemetry.metrics().register_endpoint(&config.name);
        let handler = match (config.kind, route) {
            (_, Some(UpstreamRoute::Relay(target))) => Handler::Relay(target),
            (EndpointKind::Tls, Some(UpstreamRoute::Offline)) => Handler::Unrecognized,
            (EndpointKind::Http, route) => {
                let proxy = match route {
                    Some(UpstreamRoute::Through(connector)) => {
                        HttpProxy::with_connector(config, connector)
                    }
                    Some(UpstreamRoute::Offline) => HttpProxy::offline(config),
                    _ => HttpProxy::new(config),
                };
                let proxy = proxy.map_err(|source| GatewayError::Proxy {
                    endpoint: config.name.clone(),
                    source: Box::new(source),
                })?;
                Handler::Http(Arc::new(
                    proxy
                        .with_telemetry(telemetry.clone())
                        .with_observer(observer.cloned()),
                ))
            }
            (EndpointKind::Tls, Some(UpstreamRoute::Through(connector))) => {
                Handler::Tcp(Arc::new(TcpForwarder::with_connector(config, connector)))
            }
            (EndpointKind::Tls, None) => Handler::Tcp(Arc::new(TcpForwarder::new(config))),
        };
        let terminates_here = matches!(handler, Handler::Http(_) | Handler::Tcp(_));
        let Some(tls) = terminates_here
            .then(|| {
                tls::endpoint_tls(
                    config,
                    moat_home,
                    previous.and_then(|previous| previous.issued.as_ref()),
                )
            })
            .transpose()?
        else {
            return Ok(LoadedEndpoint {
                config: Arc::new(config.clone()),
                tls: None,
                handler,
                local_ca: None,
                crls: moat_trust::RevocationLists::default(),
                issued: None,
                issued_leaf: None,
                file_digests,
            });
        };
        Ok(LoadedEndpoint {
            config: Arc::new(config.clone()),
            tls: Some(tls.server),
            handler,
            local_ca: tls.local_ca,
            crls: tls.crls,
            issued: tls.issued,
            issued_leaf: tls.issued_leaf,
            file_digests,
        })
    }

    /// One line per endpoint at startup (or when a reload adds it) saying what it enforces, so an
    /// operator can check the running setup against the intended one.
    pub(crate) fn log_ready(&self, local_addr: SocketAddr) {
        let endpoint = &self.config;
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
            sni_default = endpoint.default,
            ca_hints = endpoint.ca_hints,
            session_resumption = crate::tls::resumes_sessions(endpoint),
            crl_expired = ?endpoint.crl_expired,
            upstream_proxy_protocol = ?endpoint.upstream_proxy_protocol,
            "endpoint ready"
        );
        if endpoint.mutual_tls_cas.is_empty()
            && matches!(self.handler, Handler::Http(_) | Handler::Tcp(_))
        {
            tracing::warn!(
                endpoint = %endpoint.name,
                "no client certificate is asked for: any client may connect; give the endpoint \
                 the CAs that sign client certificates (mutual_tls_cas) to require one"
            );
        }
        match self.handler {
            Handler::Relay(_) => tracing::info!(
                endpoint = %endpoint.name,
                "TLS terminates beyond this process: clients' bytes are relayed by SNI"
            ),
            Handler::Unrecognized => tracing::info!(
                endpoint = %endpoint.name,
                "nothing serves this name now: clients are refused with unrecognized_name"
            ),
            Handler::Http(_) | Handler::Tcp(_) => {}
        }
    }

    /// True when `config` is this endpoint's configuration and none of its files changed since
    /// it was loaded: a reload then keeps this load, and with it the TLS sessions made under it.
    pub(crate) fn is_current(&self, config: &EndpointConfig) -> bool {
        *self.config == *config && self.file_digests == digest_files(config)
    }

    /// Logs every CRL past its nextUpdate at `error`: the CA's revocations may be missing
    /// from it, and with `crl_expired = "refuse"` the CA's clients are being refused.
    pub(crate) fn log_stale_crls(&self, now: UnixTime) {
        for stale in self.crls.stale(now) {
            let consequence = match self.config.crl_expired {
                CrlExpiredPolicy::Warn => {
                    "clients of this CA are still let in (crl_expired = \"warn\"); revocations made since may be missing"
                }
                CrlExpiredPolicy::Refuse => {
                    "every client of this CA is refused with unknown_ca (crl_expired = \"refuse\")"
                }
            };
            tracing::error!(
                endpoint = %self.config.name,
                crl = %stale.path.display(),
                issuer = %stale.issuer,
                next_update = %stale.next_update,
                "CRL is past its nextUpdate: {consequence}; publish a fresh CRL to {} and reload (SIGHUP)",
                stale.path.display()
            );
        }
    }
}

/// Every file an endpoint reads: what a reload re-reads and `--watch` polls.
pub(crate) fn files_of(config: &EndpointConfig) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    files.extend(config.crt.iter().cloned());
    files.extend(config.key.iter().cloned());
    files.extend(config.mutual_tls_cas.iter().cloned());
    files.extend(config.crls.iter().cloned());
    files.extend(config.upstream_ca.iter().cloned());
    files.extend(config.policy_file.iter().cloned());
    files
}

fn digest_files(config: &EndpointConfig) -> BTreeMap<PathBuf, Option<u64>> {
    files_of(config)
        .into_iter()
        .map(|path| {
            let digest = digest_file(&path);
            (path, digest)
        })
        .collect()
}

/// A digest of a file's bytes (not a security measure: it only tells "changed" apart from
/// "same"); `None` when it cannot be read.
fn digest_file(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}
