//! The inspector's HTTP listener: loopback only unless asked, and closed to other sites — a
//! page elsewhere cannot read captured requests through the browser (the `Host` must name this
//! listener, against DNS rebinding; an `Origin` must be this listener's).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HOST, HeaderName, HeaderValue, ORIGIN};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{self, ApiBody};
use crate::inspector::Inspector;

/// Headers on every answer: the page runs only its own script and is never framed.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// Whether the listener may take clients from other machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPolicy {
    /// A loopback address only, and requests naming it (the default).
    LoopbackOnly,
    /// Any address, any `Host` (`--inspect-allow-remote`): whoever reaches it reads every
    /// captured request, certificates and bodies included.
    AllowRemote,
}

/// Why the inspector could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A non-loopback address without [`ListenPolicy::AllowRemote`].
    #[error(
        "{address} is not a loopback address: the inspector shows every request's headers and \
         body to whoever reaches it; listen on 127.0.0.1 or ::1, or allow other machines \
         explicitly"
    )]
    NotLoopback {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The socket could not be bound (e.g. the port is taken).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The inspector's bound listener.
#[derive(Debug)]
pub struct InspectorListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    inspector: Inspector,
    policy: ListenPolicy,
}

impl InspectorListener {
    /// Binds `address` for `inspector`.
    pub async fn bind(
        address: SocketAddr,
        inspector: Inspector,
        policy: ListenPolicy,
    ) -> Result<InspectorListener, ListenError> {
        if policy == ListenPolicy::LoopbackOnly && !address.ip().is_loopback() {
            return Err(ListenError::NotLoopback { address });
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ListenError::Bind { address, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ListenError::Bind { address, source })?;
        Ok(InspectorListener {
            listener,
            local_addr,
            inspector,
            policy,
        })
    }

    /// The address bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves; open pages (their live feeds) end with the process.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let guard = Arc::new(OriginGuard::new(self.local_addr, self.policy));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                Err(problem) => {
                    tracing::debug!(error = %problem, "inspector: accept failed");
                    continue;
                }
            };
            let inspector = self.inspector.clone();
            let guard = Arc::clone(&guard);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let inspector = inspector.clone();
                    let guard = Arc::clone(&guard);
                    async move {
                        let mut response = match guard.refusal(&request) {
                            Some(refusal) => refusal,
                            None => api::route(&inspector, request).await,
                        };
                        let headers = response.headers_mut();
                        for (name, value) in SECURITY_HEADERS {
                            headers.insert(
                                HeaderName::from_static(name),
                                HeaderValue::from_static(value),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(problem) = served {
                    tracing::debug!(error = %problem, "inspector: connection ended");
                }
            });
        }
    }
}

/// The `Host` and `Origin` checks.
#[derive(Debug)]
struct OriginGuard {
    /// `Host` values naming this listener (empty: any, with [`ListenPolicy::AllowRemote`]).
    hosts: Vec<String>,
}

impl OriginGuard {
    fn new(local_addr: SocketAddr, policy: ListenPolicy) -> OriginGuard {
        let port = local_addr.port();
        let hosts = match policy {
            ListenPolicy::AllowRemote => Vec::new(),
            ListenPolicy::LoopbackOnly => vec![
                local_addr.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ],
        };
        OriginGuard { hosts }
    }

    /// The refusal of a request from elsewhere, or `None` when it may be answered.
    fn refusal(&self, request: &Request<Incoming>) -> Option<Response<ApiBody>> {
        let host = request
            .headers()
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .map(|host| host.trim().to_ascii_lowercase());
        let Some(host) = host else {
            return Some(api::error(
                StatusCode::BAD_REQUEST,
                "a Host header is required".to_owned(),
            ));
        };
        if !self.hosts.is_empty() && !self.hosts.contains(&host) {
            return Some(api::error(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} does not name this inspector (a page on another site may \
                     not read it); open http://{}/",
                    self.hosts[0]
                ),
            ));
        }
        if let Some(origin) = request.headers().get(ORIGIN) {
            let same = origin
                .to_str()
                .is_ok_and(|origin| origin.eq_ignore_ascii_case(&format!("http://{host}")));
            if !same {
                return Some(api::error(
                    StatusCode::FORBIDDEN,
                    "requests from another origin are refused: the inspector's API is for its \
                     own page and for local tools"
                        .to_owned(),
                ));
            }
        }
        None
    }
}
