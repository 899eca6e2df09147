//! What the proxy shows a request inspector: each exchange as the upstream received it, and a
//! way to send it again.
//!
//! With no [`RequestObserver`] set (`moat http --inspect off`, an edge) nothing here runs: the
//! proxy checks one `Option` per request. With one, a request costs copies of its three header
//! maps and of at most [`RequestObserver::body_limit`] bytes of each body, kept in a
//! [`Capture`] until the response body ends, then handed over as one [`Exchange`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Version};
use tokio::sync::watch;
use tokio::time::Instant;

use super::HttpProxy;
use super::ProxyBody;
use super::activity::Activity;
use super::forward::{self, ConnectionContext};
use super::headers::{self, ClientAddress, ForwardedFor};
use super::request_body::ClientBody;
use super::upgrade::UpgradeSlot;
use moat_telemetry::ConnectionInfo;

/// Receives every exchange an endpoint's proxy finished (answered, refused, or abandoned by the
/// client), for `moat http --inspect`.
pub trait RequestObserver: Send + Sync + fmt::Debug {
    /// The most bytes of each body (request and response) to keep; the rest is counted only.
    fn body_limit(&self) -> usize;
    /// One finished exchange.
    fn observe(&self, exchange: Exchange);
}

/// One request and its answer, as the inspector shows them.
#[derive(Debug)]
pub struct Exchange {
    /// When the request's head arrived.
    pub started: SystemTime,
    /// From the head's arrival to the response body's end (or the client leaving).
    pub duration: Duration,
    /// The client connection: endpoint, addresses, TLS, certificate (shared by the
    /// connection's requests).
    pub info: Arc<ConnectionInfo>,
    /// The request method.
    pub method: Method,
    /// The client's HTTP version.
    pub version: Version,
    /// The host the client addressed.
    pub host: Option<String>,
    /// The path and query: the canonical one the rules judged and the upstream received, or as
    /// sent when the request was refused before that.
    pub target: String,
    /// The request headers the upstream received (identity and forwarding headers moat set,
    /// the client's claims gone); the client's own when the request never reached it.
    pub request_headers: HeaderMap,
    /// The start of the request body.
    pub request_body: CapturedBody,
    /// True when the request was sent upstream.
    pub forwarded: bool,
    /// The access rule that decided, when rules did.
    pub rule: Option<String>,
    /// The status the client got (499: it left first).
    pub status: u16,
    /// The response headers the client got.
    pub response_headers: HeaderMap,
    /// The start of the response body.
    pub response_body: CapturedBody,
    /// Set on a request the inspector sent again ([`ReplayTarget::send`]).
    pub replay: Option<ReplayMark>,
    /// Where to send this request again.
    pub target_of_replay: ReplayTarget,
}

/// The first bytes of a body, and how long it was.
#[derive(Debug, Clone, Default)]
pub struct CapturedBody {
    /// Up to the observer's body limit.
    pub bytes: Bytes,
    /// Every byte that passed.
    pub total: u64,
}

impl CapturedBody {
    /// True when `bytes` holds less than the whole body.
    pub fn truncated(&self) -> bool {
        (self.bytes.len() as u64) < self.total
    }
}

/// Marks a request the inspector sent again, so it can find the exchange it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMark {
    /// The id of the exchange replayed.
    pub original: String,
    /// A number the inspector chose, unique among its replays.
    pub token: u64,
}

/// The endpoint proxy and client connection of an exchange, to send it again: through the same
/// access rules and header rewriting, as the same client (its certificate, its address), to the
/// same upstream.
#[derive(Clone)]
pub struct ReplayTarget {
    proxy: Arc<HttpProxy>,
    info: Arc<ConnectionInfo>,
}

impl fmt::Debug for ReplayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayTarget")
            .field("endpoint", &self.info.endpoint)
            .finish_non_exhaustive()
    }
}

impl ReplayTarget {
    /// The connection's client.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// True when another process's rules admitted the request (an agent relaying an edge's
    /// connection): only the request as captured may be sent again, since a changed one would
    /// reach the upstream unjudged.
    pub fn judged_at_the_edge(&self) -> bool {
        self.proxy.relayed_from_edge
    }

    /// Sends `request` as the exchange's client would have: the rules judge it again (a changed
    /// path may be refused), identity headers in it are replaced by the client's, and the
    /// answer is observed as a new exchange carrying `mark`. WebSocket upgrades are not
    /// replayed (there is no client connection to hand over): they are answered as plain
    /// requests without their `Upgrade`.
    pub async fn send(&self, request: Request<Bytes>, mark: ReplayMark) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(mark);
        parts.headers.remove(http::header::UPGRADE);
        if self.proxy.relayed_from_edge {
            // The proxy passes these as they are on an edge's connection: whatever the replay
            // says, they are the captured client's.
            headers::strip_client_claims(&mut parts.headers);
            if let Some(identity) = &self.info.client {
                headers::add_identity(&mut parts.headers, identity);
            }
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            headers::add_forwarding(
                &mut parts.headers,
                &ForwardedFor {
                    client: &ClientAddress::of(self.info.peer_addr),
                    host: host.as_deref(),
                },
            );
        }
        let request = Request::from_parts(parts, ClientBody::replayed(body));
        let context = Arc::new(ConnectionContext {
            info: Arc::clone(&self.info),
            activity: Activity::new(false, self.proxy.client_limits, Instant::now()),
            // Never stopped: a replay has no connection for a shutdown to end.
            shutdown: watch::channel(false).1,
            identity_headers: Mutex::new(None),
            client_address: ClientAddress::of(self.info.peer_addr),
            upgrade: UpgradeSlot::default(),
        });
        forward::handle(Arc::clone(&self.proxy), context, request).await
    }
}

/// The connection facts of a request an edge relayed: its client's certificate from
/// `Client-Cert` and `Client-Cert-Chain` (RFC 9440) and its address from `X-Forwarded-For`
/// (port 0: the edge sends none), as the edge wrote them. Shown by the inspector only; the
/// edge made the decisions.
fn client_named_by_edge(info: &ConnectionInfo, headers: &HeaderMap) -> Arc<ConnectionInfo> {
    use base64::Engine as _;
    let binary = |text: &str| {
        let text = text.trim();
        let inner = text.strip_prefix(':')?.strip_suffix(':')?;
        base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()
            .map(rustls_pki_types::CertificateDer::from)
    };
    let mut chain = Vec::new();
    if let Some(leaf) = headers
        .get("client-cert")
        .and_then(|value| value.to_str().ok())
        .and_then(binary)
    {
        chain.push(leaf);
        for value in headers.get_all("client-cert-chain") {
            if let Ok(text) = value.to_str() {
                chain.extend(text.split(',').filter_map(binary));
            }
        }
    }
    let client = moat_trust::ClientIdentity::from_chain(&chain)
        .ok()
        .map(Arc::new);
    let peer_ip = headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.rsplit(',').next())
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
    let mut relayed = info.clone();
    relayed.client = client;
    if let Some(ip) = peer_ip {
        relayed.peer_addr = std::net::SocketAddr::new(ip, 0);
    }
    Arc::new(relayed)
}

/// Copies the first bytes of a body as it passes, up to a limit, counting the rest.
#[derive(Debug)]
pub(super) struct BodyTee {
    limit: usize,
    kept: BytesMut,
    total: u64,
}

impl BodyTee {
    pub(super) fn new(limit: usize) -> BodyTee {
        BodyTee {
            limit,
            kept: BytesMut::new(),
            total: 0,
        }
    }

    /// Notes one chunk of the body.
    pub(super) fn take(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        if room > 0 {
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn captured(&mut self) -> CapturedBody {
        CapturedBody {
            bytes: std::mem::take(&mut self.kept).freeze(),
            total: self.total,
        }
    }
}

/// The request body's tee, shared with the body on its way upstream.
pub(super) type SharedTee = Arc<Mutex<BodyTee>>;

/// Notes `data` in a shared tee.
pub(super) fn tee_into(tee: &SharedTee, data: &[u8]) {
    tee.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(data);
}

/// One exchange being recorded; handed to the observer when the response body ends.
pub(super) struct Capture {
    observer: Arc<dyn RequestObserver>,
    started: SystemTime,
    clock: Instant,
    method: Method,
    version: Version,
    host: Option<String>,
    target: String,
    request_headers: HeaderMap,
    pub(super) request_body: SharedTee,
    forwarded: bool,
    rule: Option<String>,
    status: u16,
    response_headers: HeaderMap,
    pub(super) response_body: BodyTee,
    replay: Option<ReplayMark>,
    target_of_replay: ReplayTarget,
}

impl Capture {
    /// Starts recording a request as the client sent it. On a connection `relayed_from_edge`,
    /// the client is the one the edge named in the request's headers.
    pub(super) fn begin<B>(
        observer: &Arc<dyn RequestObserver>,
        proxy: &Arc<HttpProxy>,
        info: &Arc<ConnectionInfo>,
        request: &Request<B>,
        host: Option<String>,
        target: String,
        relayed_from_edge: bool,
    ) -> Capture {
        let limit = observer.body_limit();
        let info = if relayed_from_edge {
            client_named_by_edge(info, request.headers())
        } else {
            Arc::clone(info)
        };
        Capture {
            observer: Arc::clone(observer),
            started: SystemTime::now(),
            clock: Instant::now(),
            method: request.method().clone(),
            version: request.version(),
            host,
            target,
            // Set once known: as sent upstream, or as the client sent them when refused.
            request_headers: HeaderMap::new(),
            request_body: Arc::new(Mutex::new(BodyTee::new(limit))),
            forwarded: false,
            rule: None,
            status: 0,
            response_headers: HeaderMap::new(),
            response_body: BodyTee::new(limit),
            replay: request.extensions().get::<ReplayMark>().cloned(),
            target_of_replay: ReplayTarget {
                proxy: Arc::clone(proxy),
                info,
            },
        }
    }

    /// The request was refused before reaching the upstream: the headers shown are the
    /// client's.
    pub(super) fn refused_with(&mut self, headers: &HeaderMap) {
        self.request_headers = headers.clone();
    }

    /// The rule that decided.
    pub(super) fn decided_by(&mut self, rule: Option<String>) {
        self.rule = rule;
    }

    /// The request goes upstream with these headers and this target.
    pub(super) fn sent_upstream(&mut self, headers: &HeaderMap, target: &str) {
        self.forwarded = true;
        self.request_headers = headers.clone();
        target.clone_into(&mut self.target);
    }

    /// The response head the client gets.
    pub(super) fn answered(&mut self, status: u16, headers: &HeaderMap) {
        self.status = status;
        self.response_headers = headers.clone();
    }

    /// The client left before the response began.
    pub(super) fn abandoned(&mut self, status: u16) {
        self.status = status;
    }

    /// Hands the exchange to the observer.
    pub(super) fn finish(mut self) {
        let request_body = self
            .request_body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .captured();
        let exchange = Exchange {
            started: self.started,
            duration: self.clock.elapsed(),
            info: Arc::clone(&self.target_of_replay.info),
            method: self.method,
            version: self.version,
            host: self.host,
            target: self.target,
            request_headers: self.request_headers,
            request_body,
            forwarded: self.forwarded,
            rule: self.rule,
            status: self.status,
            response_headers: self.response_headers,
            response_body: self.response_body.captured(),
            replay: self.replay,
            target_of_replay: self.target_of_replay,
        };
        self.observer.observe(exchange);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tee_keeps_the_limit_and_counts_everything() {
        let mut tee = BodyTee::new(5);
        tee.take(b"abc");
        tee.take(b"defgh");
        tee.take(b"ij");
        let body = tee.captured();
        assert_eq!(&body.bytes[..], b"abcde");
        assert_eq!(body.total, 10);
        assert!(body.truncated());
        let mut nothing = BodyTee::new(0);
        nothing.take(b"abc");
        assert_eq!(nothing.captured().bytes.len(), 0);
    }
}
