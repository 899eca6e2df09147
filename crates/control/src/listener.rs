//! The admin listener: HTTPS (HTTP/1.1 or HTTP/2 by ALPN) whose handshake demands a client
//! certificate from an admin CA, so a client without one never reaches the API or the console.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use moat_trust::CaBundle;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use crate::api::AdminApi;
use crate::console::Console;
use crate::error::ControlError;

/// Where the admin API listens unless told otherwise: loopback only, so exposing it is a choice.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9443";

/// Connections served at once; an accept waits for one to end beyond this. Admins and their
/// scripts are few, and each request is small.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish their requests once the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin listener's TLS: its certificate and key, and the CAs whose client certificates are
/// admins. The key never appears in `Debug`.
#[derive(Clone)]
pub struct AdminTls {
    /// The listener's certificate chain, PEM, leaf first.
    pub cert_chain_pem: String,
    /// The listener's private key, PEM.
    pub key_pem: String,
    /// The admin CAs, PEM: a client certificate must chain to one of them.
    pub admin_cas_pem: Vec<u8>,
    /// Where the admin CAs came from, for messages (the `--admin-cas` file).
    pub admin_cas_origin: PathBuf,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls")
            .field("admin_cas_origin", &self.admin_cas_origin)
            .finish_non_exhaustive()
    }
}

impl AdminTls {
    /// The rustls configuration: TLS 1.2 and 1.3 (1.3 preferred), ALPN h2 and http/1.1, and a
    /// client certificate required, chaining to an admin CA.
    fn server_config(&self) -> Result<rustls::ServerConfig, ControlError> {
        let bad_certificate = |reason: String| ControlError::ServerCertificate { reason };
        let chain = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| bad_certificate(format!("the certificate PEM: {error}")))?;
        if chain.is_empty() {
            return Err(bad_certificate(
                "the certificate PEM holds no certificate".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|error| bad_certificate(format!("the key PEM: {error}")))?;
        // The gateway's bundle reader: a non-CA among the admin CAs is refused in its words.
        let cas = CaBundle::from_bytes(&self.admin_cas_origin, &self.admin_cas_pem)
            .map_err(ControlError::AdminCas)?;
        let tls_error = |reason: String| ControlError::Tls {
            what: "the admin listener",
            reason,
        };
        let mut roots = RootCertStore::empty();
        for ca in cas.iter() {
            roots.add(ca.der().clone()).map_err(|error| {
                tls_error(format!(
                    "{} certificate #{} ({}): {error}",
                    ca.source().display(),
                    ca.position(),
                    ca.subject()
                ))
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|error| tls_error(error.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| tls_error(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|error| bad_certificate(error.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The admin API's listening socket, bound and ready to serve.
pub struct AdminListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    api: Arc<AdminApi>,
    console: Option<Arc<Console>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for AdminListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl AdminListener {
    /// Checks `tls` and binds `address` (port 0 picks a free one).
    pub async fn bind(
        address: SocketAddr,
        tls: AdminTls,
        api: Arc<AdminApi>,
    ) -> Result<AdminListener, ControlError> {
        let acceptor = TlsAcceptor::from(Arc::new(tls.server_config()?));
        let bind_error = |source| ControlError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(AdminListener {
            listener,
            acceptor,
            api,
            console: None,
            local_addr,
        })
    }

    /// Serves `console` beside the API: `/console` and `/` (see [`Console`]).
    pub fn with_console(mut self, console: Arc<Console>) -> AdminListener {
        self.console = Some(console);
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets open connections finish their requests
    /// (at most 5 s).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = accept(&self.listener, &permits) => accepted,
            };
            let Some((stream, peer, permit)) = accepted else {
                continue;
            };
            let acceptor = self.acceptor.clone();
            let api = Arc::clone(&self.api);
            let console = self.console.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                serve_connection(acceptor, stream, peer, api, console, watcher).await;
                drop(permit);
            });
        }
        drop(self.listener);
        if let Some(console) = &self.console {
            console.close();
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("admin API connections still open after the drain time; leaving them");
        }
    }
}

/// The next connection and its permit; `None` after an accept error (logged, and retried
/// after a pause so a lack of file descriptors does not spin).
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(error) => {
            tracing::warn!(%error, "admin API: accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// One connection: the handshake (refused without an admin certificate), then HTTP until the
/// client leaves or the listener stops.
async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    api: Arc<AdminApi>,
    console: Option<Arc<Console>>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let handshake = acceptor.accept(stream).into_fallible();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((error, socket))) => {
            tracing::info!(%peer, %error, "admin API: handshake refused");
            linger_after_alert(socket).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "admin API: no handshake within 10 s");
            return;
        }
    };
    let admin: Arc<str> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(common_name)
        .unwrap_or_default()
        .into();
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let api = Arc::clone(&api);
        let console = console.clone();
        let admin = Arc::clone(&admin);
        async move {
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let response = match console
                .as_deref()
                .and_then(|console| console.handle(&request))
            {
                Some(page) => page,
                None => api.handle(request).await.map(|body| body.boxed()),
            };
            tracing::info!(%admin, %method, %path, status = response.status().as_u16(), "admin API request");
            Ok::<_, Infallible>(response)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, %error, "admin API connection ended with an error");
    }
}

/// How long a refused client's remaining bytes are read and discarded after the alert.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Closes a refused connection so that the client reads the alert, as the gateway does: FIN
/// after it, then what the client still sends (its Finished, often its first request) is read
/// and discarded for a moment. Closing a socket with unread bytes makes the kernel send RST,
/// and a client that receives RST may drop the alert unread (curl then reports a socket error
/// instead of "certificate required").
async fn linger_after_alert(mut socket: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = socket.shutdown().await;
    let mut discard = vec![0u8; 4096];
    let _ = tokio::time::timeout(ALERT_LINGER, async {
        while let Ok(read) = socket.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

/// The certificate's subject common name ("" when it has none): who the admin is, in logs.
fn common_name(certificate: &CertificateDer<'_>) -> String {
    X509Certificate::from_der(certificate.as_ref())
        .ok()
        .and_then(|(_, certificate)| {
            certificate
                .subject()
                .iter_common_name()
                .next()
                .and_then(|name| name.as_str().ok().map(str::to_owned))
        })
        .unwrap_or_default()
}
