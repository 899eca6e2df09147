//! One client's TLS handshake: the ClientHello read before it, the endpoint its SNI picks, the
//! handshake with that endpoint's configuration and the verifier's verdict, and the one report
//! of a handshake that failed (log line, metrics, audit event, alert read by the client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_config::EndpointConfig;
use moat_telemetry::ConnectionInfo;
use moat_telemetry::presented::{Presented, PresentedCertificate};
use moat_telemetry::{HandshakeRefusal, Telemetry};
use moat_trust::{ClientIdentity, RefusalReason};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::StartHandshake;

use crate::access::{CertificateVerdict, HandshakeFacts, take_verdict};
use crate::endpoint::Handler;
use crate::sni::{self, ClientHelloError, NoRoute, Routes};
use crate::upstream_route::RelayTarget;

/// The byte stream a client connection arrives on: an accepted socket, or a stream an edge
/// relayed over its tunnel; the handshake and everything after it are the same for both.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// A client connection whose handshake succeeded, with the endpoint that serves it.
pub(crate) struct Established<S> {
    /// Boxed: the connection's futures move it from one to the next, and each keeps a slot for
    /// it for as long as the connection lives; boxed, every slot is a pointer and the TLS
    /// state (over 1 KiB) is held once.
    pub(crate) tls: Box<tokio_rustls::server::TlsStream<S>>,
    pub(crate) info: ConnectionInfo,
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) handler: Handler,
    /// What the audit event of the accepted handshake names besides `info`.
    pub(crate) cipher_suite: Option<String>,
    pub(crate) alpn: Option<String>,
}

/// A client whose endpoint does not terminate TLS here: its bytes go, untouched, to the
/// endpoint's relay target.
pub(crate) struct Relayed<S> {
    pub(crate) stream: S,
    /// Everything read from the client so far (its ClientHello), to be sent first.
    pub(crate) received: Vec<u8>,
    pub(crate) target: Arc<dyn RelayTarget>,
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) sni: Option<String>,
}

/// Where a client's ClientHello led. Not boxed: the value lives only until `handle_connection`
/// matches it, and a box would cost an allocation per handshake on the common path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Arrival<S> {
    /// The handshake succeeded here.
    Established(Established<S>),
    /// The endpoint is relayed: no handshake here.
    Relayed(Relayed<S>),
}

/// Why a handshake ended without a connection.
pub(crate) enum HandshakeFailure {
    /// The first bytes were not a TLS ClientHello (rustls's alert was sent).
    NotTls(rustls::Error),
    /// The ClientHello and what came with it exceed what rustls buffers.
    HelloTooLarge,
    /// The client closed or reset the connection before the handshake finished.
    Closed(std::io::Error),
    /// The handshake took longer than `timeouts.request_header` allows.
    TimedOut(Duration),
    /// No endpoint on the address serves the SNI (or its absence).
    UnrecognizedName(NoRoute),
    /// The handshake failed: the certificate, the rules, or TLS itself refused.
    Refused(std::io::Error, HandshakeRefusal),
    /// The verifier accepted a certificate the connection cannot read (not expected).
    UnreadableIdentity(moat_trust::TrustError),
}

/// A failed handshake with what its report needs.
pub(crate) struct Failed<S> {
    failure: HandshakeFailure,
    /// The endpoint the SNI chose; before that, every endpoint of the address.
    endpoint: Option<String>,
    /// What the client presented before the end.
    presented: Presented,
    /// The stream, when the client is owed an alert it should be able to read.
    socket: Option<S>,
}

impl<S: ClientStream> Failed<S> {
    /// A failure before any endpoint was chosen.
    pub(crate) fn unrouted(failure: HandshakeFailure, socket: Option<S>) -> Failed<S> {
        Failed {
            failure,
            endpoint: None,
            presented: Presented::default(),
            socket,
        }
    }

    /// The one place a failed handshake is logged, audited and counted, and its socket closed
    /// so that the client reads the alert.
    pub(crate) async fn report(
        self,
        telemetry: &Telemetry,
        peer_addr: SocketAddr,
        routes: &Routes,
    ) {
        let Failed {
            failure,
            endpoint,
            presented,
            socket,
        } = self;
        let reason = match &failure {
            HandshakeFailure::NotTls(error) => {
                tracing::warn!(reason = "tls_error", %error, "handshake refused");
                HandshakeRefusal::Other
            }
            HandshakeFailure::HelloTooLarge => {
                tracing::warn!(
                    reason = "other",
                    "handshake refused: the ClientHello and what came with it exceed the 64 KiB \
                     rustls buffers before the handshake (an oversized SNI or extensions, or \
                     data sent before the server answered)"
                );
                HandshakeRefusal::Other
            }
            HandshakeFailure::Closed(error) => {
                tracing::info!(%error, "connection closed during the handshake");
                HandshakeRefusal::ConnectionClosed
            }
            HandshakeFailure::TimedOut(limit) => {
                tracing::warn!(
                    reason = "handshake_timeout",
                    timeout_ms = limit.as_millis() as u64,
                    "handshake refused: the client did not finish the TLS handshake in time"
                );
                HandshakeRefusal::HandshakeTimeout
            }
            HandshakeFailure::UnrecognizedName(no_route) => {
                let served: Vec<&str> = routes
                    .endpoints()
                    .iter()
                    .map(|endpoint| endpoint.config.domain.as_str())
                    .collect();
                match no_route {
                    NoRoute::UnknownName(name) => tracing::warn!(
                        reason = "unrecognized_name",
                        sni = %name,
                        served = ?served,
                        "handshake refused: no endpoint on this address serves the requested name"
                    ),
                    NoRoute::NoServerName => tracing::warn!(
                        reason = "unrecognized_name",
                        served = ?served,
                        "handshake refused: the client sent no SNI and no endpoint on this \
                         address is marked default = true"
                    ),
                }
                HandshakeRefusal::UnrecognizedName
            }
            HandshakeFailure::Refused(error, reason) => {
                log_refused_handshake(error, *reason);
                *reason
            }
            HandshakeFailure::UnreadableIdentity(error) => {
                tracing::warn!(reason = "malformed", %error, "connection closed: cannot read the verified client certificate");
                HandshakeRefusal::Certificate(RefusalReason::Malformed)
            }
        };
        // Until the SNI picks an endpoint, refusals are counted under the names served here.
        let endpoint = endpoint.unwrap_or_else(|| {
            routes
                .endpoints()
                .iter()
                .map(|endpoint| endpoint.config.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        telemetry.handshake_refused(&endpoint, peer_addr, reason, &presented);
        if let Some(mut socket) = socket {
            if matches!(failure, HandshakeFailure::UnrecognizedName(_)) {
                sni::refuse_unrecognized_name(&mut socket).await;
            }
            linger_after_alert(socket).await;
        }
    }
}

/// Reads the ClientHello, picks the endpoint its SNI names and runs the TLS handshake (or
/// hands the client to the endpoint's relay), all bounded by `timeouts.request_header`.
pub(crate) async fn establish<S: ClientStream>(
    mut stream: S,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    routes: &Routes,
    started: Instant,
) -> Result<Arrival<S>, Failed<S>> {
    // Before the SNI is known the most patient endpoint of the address sets the limit.
    let hello_timeout = routes
        .endpoints()
        .iter()
        .map(|endpoint| endpoint.config.timeouts.request_header)
        .max()
        .unwrap_or(Duration::from_secs(10));
    let hello = match tokio::time::timeout(hello_timeout, sni::read_client_hello(&mut stream)).await
    {
        Ok(Ok(hello)) => hello,
        Ok(Err(ClientHelloError::Tls(error))) => {
            return Err(Failed::unrouted(
                HandshakeFailure::NotTls(error),
                Some(stream),
            ));
        }
        Ok(Err(ClientHelloError::TooLarge)) => {
            return Err(Failed::unrouted(HandshakeFailure::HelloTooLarge, None));
        }
        Ok(Err(ClientHelloError::Io(error))) => {
            return Err(Failed::unrouted(HandshakeFailure::Closed(error), None));
        }
        Err(_) => {
            let failure = HandshakeFailure::TimedOut(hello_timeout);
            return Err(Failed::unrouted(failure, None));
        }
    };
    let accepted = hello.accepted;
    let server_name = accepted.client_hello().server_name().map(str::to_string);
    let endpoint = match routes.pick(server_name.as_deref()) {
        Ok(endpoint) => Arc::clone(endpoint),
        Err(no_route) => {
            return Err(Failed {
                failure: HandshakeFailure::UnrecognizedName(no_route),
                endpoint: None,
                presented: Presented {
                    sni: server_name,
                    ..Presented::default()
                },
                socket: Some(stream),
            });
        }
    };
    let config = Arc::clone(&endpoint.config);
    if routes.endpoints().len() > 1 {
        tracing::Span::current().record("endpoint", config.name.as_str());
    }
    let handler = endpoint.handler.clone();
    let endpoint_tls = match (&handler, &endpoint.tls) {
        (Handler::Relay(target), _) => {
            return Ok(Arrival::Relayed(Relayed {
                stream,
                received: hello.received,
                target: Arc::clone(target),
                config,
                sni: server_name,
            }));
        }
        (Handler::Http(_) | Handler::Tcp(_), Some(tls)) => tls,
        // A tls endpoint nobody serves now is refused like a name nobody serves.
        (Handler::Unrecognized, _) | (_, None) => {
            let name = server_name.clone().unwrap_or_default();
            return Err(Failed {
                failure: HandshakeFailure::UnrecognizedName(NoRoute::UnknownName(name)),
                endpoint: Some(config.name.clone()),
                presented: Presented {
                    sni: server_name,
                    ..Presented::default()
                },
                socket: Some(stream),
            });
        }
    };
    let handshake_left = config
        .timeouts
        .request_header
        .saturating_sub(started.elapsed());
    // The verifier judges the certificate with these facts (a tls endpoint's rules read them).
    let facts = HandshakeFacts {
        peer: peer_addr,
        local: local_addr,
        sni: server_name.clone(),
    };
    let failed = |failure, certificate, socket| Failed {
        failure,
        endpoint: Some(config.name.clone()),
        presented: Presented {
            sni: server_name.clone(),
            certificate,
        },
        socket,
    };
    let (server_config, verdict_slot) = match endpoint_tls.for_handshake(facts) {
        Ok(made) => made,
        Err(error) => {
            let error = std::io::Error::other(error);
            let failure = HandshakeFailure::Refused(error, HandshakeRefusal::Other);
            return Err(failed(failure, None, None));
        }
    };
    let handshake = tokio::time::timeout(
        handshake_left,
        StartHandshake::from_parts(accepted, stream)
            .into_stream(server_config)
            .into_fallible(),
    )
    .await;
    let verdict = verdict_slot.as_ref().and_then(take_verdict);
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err((error, socket))) => {
            let (reason, certificate) = match verdict {
                Some(CertificateVerdict::Untrusted {
                    certificate,
                    reason,
                }) => (
                    HandshakeRefusal::Certificate(reason),
                    Some(PresentedCertificate::Unread(certificate)),
                ),
                Some(CertificateVerdict::Denied(identity)) => (
                    HandshakeRefusal::PolicyDenied,
                    Some(PresentedCertificate::Read(identity)),
                ),
                // Accepted, then the handshake failed for another reason (e.g. the signature
                // of CertificateVerify), or no certificate came at all.
                Some(CertificateVerdict::Accepted(identity)) => (
                    HandshakeRefusal::from_handshake_error(&error),
                    Some(PresentedCertificate::Read(identity)),
                ),
                None => (HandshakeRefusal::from_handshake_error(&error), None),
            };
            let failure = HandshakeFailure::Refused(error, reason);
            return Err(failed(failure, certificate, Some(socket)));
        }
        Err(_) => {
            let failure = HandshakeFailure::TimedOut(config.timeouts.request_header);
            return Err(failed(failure, None, None));
        }
    };

    let (_, session) = tls.get_ref();
    // The verifier read the chain it accepted; a resumed session's was read by the handshake
    // that made it, so it is read here, once.
    let client = match (verdict, session.peer_certificates()) {
        (Some(CertificateVerdict::Accepted(identity)), _) => Some(identity),
        (_, Some(chain)) if !chain.is_empty() => match ClientIdentity::from_chain(chain) {
            Ok(identity) => Some(Arc::new(identity)),
            Err(error) => {
                // The session's first handshake read it, so this is not expected; refuse
                // rather than forward a connection whose identity cannot be told upstream.
                let failure = HandshakeFailure::UnreadableIdentity(error);
                return Err(failed(failure, None, None));
            }
        },
        _ => None,
    };
    let info = ConnectionInfo {
        endpoint: config.name.clone(),
        peer_addr,
        local_addr,
        sni: session.server_name().map(str::to_string),
        sni_routed: routes.sni_routed(),
        tls_version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        },
        cipher_suite: session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str()),
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
    let cipher_suite = session
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()));
    let alpn = session
        .alpn_protocol()
        .map(|protocol| String::from_utf8_lossy(protocol).into_owned());
    Ok(Arrival::Established(Established {
        tls: Box::new(tls),
        info,
        config,
        handler,
        cipher_suite,
        alpn,
    }))
}

/// How long a refused client's remaining bytes are read and discarded after the alert.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Closes a refused connection so that the client reads the alert: sends FIN after it, then
/// discards what the client still sends (its Finished, often its first request) for a moment.
/// Closing a socket with unread bytes makes the kernel send RST, and a client that receives RST
/// may drop the alert unread and report "connection reset" instead of the refusal's reason.
async fn linger_after_alert<S: ClientStream>(mut socket: S) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = socket.shutdown().await;
    // On the heap: a buffer in an async fn is part of its future, and so of the state of every
    // handshake that awaits it, whether or not it ever comes here.
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

/// One log line for a handshake that failed. Certificate refusals were already logged by the
/// verifier with the certificate's subject, issuer and serial (inside this connection's span),
/// so only the failures it never saw are logged here.
fn log_refused_handshake(error: &std::io::Error, reason: HandshakeRefusal) {
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(tls_error) => {
            tracing::warn!(reason = reason.as_str(), error = %tls_error, "handshake refused");
        }
        None => {
            tracing::info!(%error, "connection closed during the handshake");
        }
    }
}
