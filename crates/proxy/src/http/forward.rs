//! One request's trip: admit it, rewrite its headers, send it upstream, and relay the response.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use super::activity::{Activity, InFlight};
use super::canonical::{CanonicalTarget, canonical_target};
use super::extended_connect;
use super::headers::{self, ClientAddress, ForwardedFor};
use super::host::{checked_host, endpoint_serves};
use super::inspect::Capture;
use super::pages::{CLIENT_CLOSED_REQUEST, DecidedStatus, PageFormat, Refusal, refusal_response};
use super::request_body::{ClientBody, ClientBodyFailure, Progress, ProgressBody};
use super::upgrade::{self, ClientUpgrade, UpgradeSlot};
use super::upstream::{Route, upstream_body};
use super::{BodyError, HttpProxy, ProxyBody};
use moat_telemetry::ConnectionInfo;
use moat_telemetry::RequestAudit;
use moat_telemetry::audit::HttpRequestEvent;

/// What every request on one client connection shares.
pub(super) struct ConnectionContext {
    /// Who the client is and how it connected; shared with the inspector's captures, which
    /// keep it for each request.
    pub info: Arc<ConnectionInfo>,
    /// Marks requests in flight, for the connection's idle and header timeouts.
    pub activity: Arc<Activity>,
    /// Handed to upgrade tunnels, which close when the gateway stops.
    pub shutdown: watch::Receiver<bool>,
    /// The client's identity headers, built at the connection's first request and kept while
    /// requests come: the certificate cannot change while the connection lasts, base64 and
    /// formatting on every request cost keep-alive throughput, and a connection that never sends
    /// a request never needs them. An HTTP/1 connection drops them with hyper's state when it
    /// goes quiet (about 2 KiB with a typical certificate and its chain).
    pub identity_headers: Mutex<Option<Arc<HeaderMap>>>,
    /// The client's address as the forwarding headers write it.
    pub client_address: ClientAddress,
    /// Where a WebSocket request receives the client connection after its `101`.
    pub upgrade: UpgradeSlot,
}

impl ConnectionContext {
    /// The identity headers of the connection's client (empty without a certificate).
    pub(super) fn identity_headers(&self) -> Arc<HeaderMap> {
        let mut kept = self
            .identity_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let headers = kept.get_or_insert_with(|| {
            let mut identity_headers = HeaderMap::new();
            if let Some(identity) = &self.info.client {
                headers::add_identity(&mut identity_headers, identity);
            }
            Arc::new(identity_headers)
        });
        Arc::clone(headers)
    }

    /// Drops the kept identity headers of a connection that went quiet; the next request
    /// builds them again.
    pub(super) fn forget_identity_headers(&self) {
        self.identity_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Handles one client request end to end and writes its log line.
pub(super) async fn handle(
    proxy: Arc<HttpProxy>,
    context: Arc<ConnectionContext>,
    request: Request<ClientBody>,
) -> Response<ProxyBody> {
    let in_flight = context.activity.request_started();
    let method = request.method().clone();
    let info = &context.info;
    let head = check_head(&proxy, info, &request);
    // The audit names what the rules judged; a request refused before that, what it sent.
    let (host, path) = match &head {
        Ok(head) => (head.host.clone(), head.target.path().to_owned()),
        Err(_) => (raw_host(&request), request.uri().path().to_owned()),
    };
    let subject = info.client.as_ref().map(|c| c.subject.clone());
    let started = Instant::now();
    let capture = proxy.observer.as_ref().map(|observer| {
        let target = request.uri().path_and_query().map_or("/", |t| t.as_str());
        Capture::begin(
            observer,
            &proxy,
            info,
            &request,
            host.clone(),
            target.to_owned(),
            proxy.relayed_from_edge,
        )
    });
    // Written even when the client goes away before the response starts (this future is then
    // dropped): as status 499, nginx's "client closed request".
    let mut unanswered = UnansweredRequest {
        audit: Some(RequestAudit {
            telemetry: proxy.telemetry.clone(),
            started: started.into_std(),
            event: HttpRequestEvent {
                event: "http_request",
                time: String::new(),
                endpoint: info.endpoint.clone(),
                peer: info.peer_addr,
                method: method.to_string(),
                host: host.clone(),
                path: path.clone(),
                status: CLIENT_CLOSED_REQUEST,
                // Filled in once the access policy has decided.
                rule: None,
                client_subject: subject.clone(),
                upstream_ms: None,
                duration_ms: 0.0,
                bytes_in: 0,
                bytes_out: 0,
            },
        }),
        request_body: Progress::new(),
        capture,
    };

    let admitted = head.and_then(|head| {
        if proxy.offline {
            let host = match &head.host {
                Some(host) => hostname_of(host).to_owned(),
                None => proxy.domain.clone(),
            };
            return Err(Refusal::EndpointOffline { host });
        }
        let rule = proxy.admitter().admit(info, &request, &head)?;
        if method == Method::CONNECT && !extended_connect::is_websocket(&request) {
            Err(Refusal::ConnectNotAllowed)
        } else {
            Ok((rule, head))
        }
    });
    let policy_rule = match &admitted {
        Ok((rule, _)) => rule.clone(),
        Err(Refusal::Policy(decision)) => decision.rule.clone(),
        Err(_) => None,
    };
    if let Some(audit) = &mut unanswered.audit {
        audit.event.rule = policy_rule.clone();
    }
    if let Some(capture) = &mut unanswered.capture {
        capture.decided_by(policy_rule.clone());
    }
    let (response, upstream_time) = match admitted {
        Err(refusal) => {
            log_refused_head(info, &refusal, &request);
            if let Some(capture) = &mut unanswered.capture {
                capture.refused_with(request.headers());
            }
            (
                refusal_response(refusal, PageFormat::for_request(request.headers())),
                None,
            )
        }
        Ok((_, head)) => {
            let response = forward(
                &proxy,
                &context,
                request,
                head,
                &unanswered.request_body,
                unanswered.capture.as_mut(),
            )
            .await;
            (response, Some(started.elapsed()))
        }
    };

    tracing::info!(
        endpoint = %info.endpoint,
        method = %method,
        host = host.as_deref().unwrap_or("-"),
        path = %path,
        status = DecidedStatus::of(&response).as_u16(),
        upstream_ms = upstream_time.map(|d| d.as_secs_f64() * 1000.0),
        client = subject.as_deref().unwrap_or("-"),
        rule = policy_rule.as_deref().unwrap_or("-"),
        peer = %info.peer_addr,
        "request"
    );
    let mut audit = unanswered.audit.take();
    if let Some(audit) = &mut audit {
        audit.event.status = DecidedStatus::of(&response).as_u16();
        audit.event.upstream_ms = upstream_time.map(|d| d.as_secs_f64() * 1000.0);
    }
    let request_body = unanswered.request_body.clone();
    let mut capture = unanswered.capture.take();
    if let Some(capture) = &mut capture {
        capture.answered(DecidedStatus::of(&response).as_u16(), response.headers());
    }
    response.map(|body| {
        TrackedBody {
            inner: body,
            _in_flight: in_flight,
            bytes_out: 0,
            request_body,
            audit,
            capture,
        }
        .boxed()
    })
}

/// A request head that passed [`check_head`]: what the rules judge and the upstream receives.
pub(super) struct CheckedHead {
    /// The canonical path and query.
    pub target: CanonicalTarget,
    /// The host the client addressed (`None` only for HTTP/1.0 without `Host`).
    pub host: Option<String>,
}

/// Checks what the rules and the upstream will read in a request head: one valid host that
/// belongs to this endpoint, a path with one canonical form, and no transfer coding moat would
/// drop on the way.
fn check_head(
    proxy: &HttpProxy,
    info: &ConnectionInfo,
    request: &Request<ClientBody>,
) -> Result<CheckedHead, Refusal> {
    let host = checked_host(request).map_err(Refusal::InvalidHost)?;
    if info.sni_routed
        && let Some(host) = &host
        && !endpoint_serves(&proxy.domain, host)
    {
        return Err(Refusal::MisdirectedRequest);
    }
    let raw_target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let target = canonical_target(raw_target).map_err(Refusal::InvalidPath)?;
    if !headers::transfer_coding_is_chunked_only(request.headers()) {
        return Err(Refusal::UnsupportedTransferCoding);
    }
    Ok(CheckedHead { target, host })
}

/// Logs why a request was refused before it reached the rules or the upstream.
fn log_refused_head(info: &ConnectionInfo, refusal: &Refusal, request: &Request<ClientBody>) {
    let target = request.uri().path_and_query().map_or("", |t| t.as_str());
    match refusal {
        Refusal::InvalidPath(rejection) => tracing::info!(
            endpoint = %info.endpoint,
            reason = rejection.as_str(),
            target = %target,
            "request refused (400): {rejection}"
        ),
        Refusal::InvalidHost(rejection) => tracing::info!(
            endpoint = %info.endpoint,
            reason = rejection.as_str(),
            "request refused (400): {rejection}"
        ),
        Refusal::MisdirectedRequest => tracing::info!(
            endpoint = %info.endpoint,
            sni = info.sni.as_deref().unwrap_or(""),
            host = raw_host(request).as_deref().unwrap_or(""),
            "request refused (421): its host is not served by the endpoint its SNI chose"
        ),
        Refusal::UnsupportedTransferCoding => tracing::info!(
            endpoint = %info.endpoint,
            transfer_encoding = ?request.headers().get(header::TRANSFER_ENCODING),
            "request refused (501): a transfer coding other than chunked"
        ),
        _ => {}
    }
}

/// A request whose response has not begun: if it is dropped in that state, its audit event is
/// written as it stands.
struct UnansweredRequest {
    audit: Option<RequestAudit>,
    /// Counts the request body bytes sent upstream.
    request_body: Progress,
    /// The exchange for the inspector, when there is one.
    capture: Option<Capture>,
}

impl Drop for UnansweredRequest {
    fn drop(&mut self) {
        if let Some(audit) = self.audit.take() {
            audit.finish(self.request_body.body_bytes(), 0);
        }
        if let Some(mut capture) = self.capture.take() {
            capture.abandoned(CLIENT_CLOSED_REQUEST);
            capture.finish();
        }
    }
}

/// The host as the client wrote it, unchecked, for the audit of a request refused for it.
fn raw_host(request: &Request<ClientBody>) -> Option<String> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

/// Sends the admitted request upstream and turns the outcome into the client's response.
async fn forward(
    proxy: &HttpProxy,
    context: &ConnectionContext,
    mut request: Request<ClientBody>,
    head: CheckedHead,
    progress: &Progress,
    capture: Option<&mut Capture>,
) -> Response<ProxyBody> {
    let page_format = PageFormat::for_request(request.headers());
    let websocket_over_http2 = extended_connect::is_websocket(&request);
    let websocket = websocket_over_http2
        || (request.version() == Version::HTTP_11
            && headers::wants_websocket(request.method(), request.headers()));
    if !websocket && let Some(protocols) = headers::names_upgrade(request.headers()) {
        tracing::info!(
            endpoint = %context.info.endpoint,
            upgrade = %protocols,
            "Upgrade header removed: moat relays only WebSocket upgrades"
        );
    }
    let client_upgrade = if websocket_over_http2 {
        Some(ClientUpgrade::Http2 {
            stream: hyper::upgrade::on(&mut request),
            in_flight: context.activity.request_started(),
        })
    } else {
        websocket.then(|| ClientUpgrade::Http1(context.upgrade.expect()))
    };
    let route = proxy.client.route(
        request.version() == Version::HTTP_2 && page_format == PageFormat::Grpc,
        websocket,
    );

    let (mut parts, body) = request.into_parts();
    // Nearly always the client's target already is the canonical one: reuse it, unparsed.
    let unchanged = parts
        .uri
        .path_and_query()
        .filter(|sent| sent.as_str() == head.target.as_str())
        .cloned();
    let path_and_query = match unchanged
        .map_or_else(|| PathAndQuery::try_from(head.target.as_str()), Ok)
    {
        Ok(path_and_query) => path_and_query,
        Err(err) => {
            tracing::warn!(endpoint = %context.info.endpoint, error = %err, "cannot build upstream URI");
            return refusal_response(Refusal::UpstreamUnreachable, page_format);
        }
    };
    // Over HTTP/2 the host the client addressed travels as `:authority` (with `Host` equal to it,
    // for an upstream that reads that); the connection is dialed and verified as the upstream's
    // all the same.
    let authority = match (route, head.host.as_deref()) {
        (Route::Http2, Some(host)) => {
            Authority::try_from(host).unwrap_or_else(|_| proxy.upstream_authority.clone())
        }
        _ => proxy.upstream_authority.clone(),
    };
    parts.uri = match Uri::builder()
        .scheme(proxy.upstream_scheme.clone())
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(err) => {
            tracing::warn!(endpoint = %context.info.endpoint, error = %err, "cannot build upstream URI");
            return refusal_response(Refusal::UpstreamUnreachable, page_format);
        }
    };
    parts.version = Version::HTTP_11;
    let host = head.host.as_deref();
    let outgoing = &mut parts.headers;
    headers::remove_hop_by_hop(outgoing, websocket);
    headers::join_cookies(outgoing);
    // The upstream sees the host the client addressed, so name-based upstreams keep working.
    if let Some(value) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        outgoing.insert(header::HOST, value);
    }
    // On an agent, the edge already did this for the client it verified.
    if !proxy.relayed_from_edge {
        headers::strip_client_claims(outgoing);
        for (name, value) in context.identity_headers().iter() {
            outgoing.insert(name.clone(), value.clone());
        }
        headers::add_forwarding(
            outgoing,
            &ForwardedFor {
                client: &context.client_address,
                host,
            },
        );
    }
    let expected_accept = if websocket_over_http2 {
        match extended_connect::upstream_handshake(&mut parts.method, &mut parts.headers) {
            Some(expected) => Some(expected),
            None => {
                tracing::warn!(endpoint = %context.info.endpoint, "no random WebSocket key could be made");
                return refusal_response(Refusal::UpstreamUnreachable, page_format);
            }
        }
    } else {
        None
    };

    let tee = capture.map(|capture| {
        capture.sent_upstream(&parts.headers, head.target.as_str());
        Arc::clone(&capture.request_body)
    });
    let upstream_request = Request::from_parts(
        parts,
        ProgressBody::new(body, progress.clone(), proxy.body_limits, tee),
    );
    let sent = proxy.client.send(upstream_request, route);
    tokio::pin!(sent);
    let timeout = proxy.upstream_response_timeout;
    let outcome = loop {
        let deadline = progress.last() + timeout;
        tokio::select! {
            outcome = &mut sent => break outcome,
            () = tokio::time::sleep_until(deadline) => {
                if progress.last() + timeout <= Instant::now() {
                    tracing::warn!(
                        endpoint = %context.info.endpoint,
                        timeout_ms = timeout.as_millis(),
                        "upstream did not respond in time"
                    );
                    return refusal_response(Refusal::UpstreamTimedOut, page_format);
                }
            }
        }
    };
    let mut response = match outcome {
        Ok(response) => {
            // From here the exchange may be a conversation (a gRPC stream): the client's
            // silence is no longer a slow upload.
            progress.response_started();
            response
        }
        Err(err) => {
            if let Some(failure) = progress.client_failure() {
                return client_body_refusal(context, failure, progress, page_format);
            }
            let cause = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(
                endpoint = %context.info.endpoint,
                upstream = %proxy.upstream_authority,
                connect = err.is_connect(),
                error = %err,
                cause = %cause,
                "upstream request failed"
            );
            return refusal_response(Refusal::UpstreamUnreachable, page_format);
        }
    };

    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if websocket_over_http2 && !switching && response.status().is_success() {
        // A 2xx answers an extended CONNECT with a tunnel; the upstream opened none.
        tracing::warn!(
            endpoint = %context.info.endpoint,
            status = response.status().as_u16(),
            "upstream answered a WebSocket upgrade without switching protocols; refused"
        );
        return refusal_response(Refusal::UpstreamUnreachable, page_format);
    }
    if switching {
        let upstream_switched_to_websocket = response
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        let accepted = expected_accept
            .as_ref()
            .is_none_or(|expected| expected.matches(response.headers()));
        if !accepted {
            tracing::warn!(
                endpoint = %context.info.endpoint,
                "upstream's Sec-WebSocket-Accept does not answer the key moat sent; refused"
            );
            return refusal_response(Refusal::UpstreamUnreachable, page_format);
        }
        match client_upgrade {
            Some(client_upgrade) if upstream_switched_to_websocket => {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                upgrade::spawn_tunnel(
                    client_upgrade,
                    upstream_upgrade,
                    context.shutdown.clone(),
                    context.info.endpoint.clone(),
                );
            }
            _ => {
                // An upstream may not switch to a protocol the client and moat did not agree on.
                tracing::warn!(
                    endpoint = %context.info.endpoint,
                    upgrade = ?response.headers().get(header::UPGRADE),
                    "upstream sent 101 without a WebSocket upgrade request; refused"
                );
                return refusal_response(Refusal::UpstreamUnreachable, page_format);
            }
        }
    }
    if switching && websocket_over_http2 {
        let empty = http_body_util::Empty::new().map_err(|never| match never {});
        return extended_connect::client_response(response.headers(), empty.boxed());
    }
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, switching);
    Response::from_parts(
        parts,
        upstream_body(
            body,
            proxy.upstream_response_timeout,
            &context.info.endpoint,
        ),
    )
}

/// The answer when the upstream exchange failed because of the client's body: 408 when it was
/// too slow, 400 when malformed, 499 (recorded, not sent) when the client left.
fn client_body_refusal(
    context: &ConnectionContext,
    failure: ClientBodyFailure,
    progress: &Progress,
    page_format: PageFormat,
) -> Response<ProxyBody> {
    let endpoint = &context.info.endpoint;
    let received = progress.body_bytes();
    let refusal = match failure {
        ClientBodyFailure::TooSlow => {
            tracing::warn!(
                endpoint = %endpoint,
                peer = %context.info.peer_addr,
                bytes_received = received,
                "request body arrived too slowly (timeouts.request_body); cut off with 408"
            );
            Refusal::RequestBodyTimeout
        }
        ClientBodyFailure::Invalid => {
            tracing::info!(endpoint = %endpoint, bytes_received = received, "request body malformed; answered 400");
            Refusal::InvalidRequestBody
        }
        ClientBodyFailure::Left => {
            tracing::info!(endpoint = %endpoint, bytes_received = received, "client left in the middle of its request body");
            Refusal::ClientClosedRequest
        }
    };
    let mut response = refusal_response(refusal, page_format);
    if !context.info.http2 {
        // What is left of the body is not read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A response body that keeps its request counted as in flight until it has been sent, and
/// reports the request's audit event and metrics when it is dropped (sent or abandoned).
struct TrackedBody {
    inner: ProxyBody,
    _in_flight: InFlight,
    /// Response body bytes handed to the client so far.
    bytes_out: u64,
    /// Counts the request body bytes sent upstream.
    request_body: Progress,
    /// Taken once, on drop.
    audit: Option<RequestAudit>,
    /// The exchange for the inspector, when there is one; handed over on drop.
    capture: Option<Capture>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.request_body.response_finished();
        if let Some(audit) = self.audit.take() {
            audit.finish(self.request_body.body_bytes(), self.bytes_out);
        }
        if let Some(capture) = self.capture.take() {
            capture.finish();
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    let this = &mut *self;
                    this.bytes_out += length;
                    if let Some(capture) = &mut this.capture {
                        capture.response_body.take(data);
                    }
                }
            }
            // The response is complete: a request body still coming is an upload again.
            Poll::Ready(None) => self.request_body.response_finished(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The hostname of a checked `Host` value: without its port (`app.example.com:8443`), brackets
/// kept on an IPv6 literal (`[::1]:8443` → `[::1]`).
fn hostname_of(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod hostname_tests {
    use super::hostname_of;

    #[test]
    fn the_port_is_left_out_of_a_hostname() {
        for (host, name) in [
            ("app.example.com:8443", "app.example.com"),
            ("app.example.com", "app.example.com"),
            ("[::1]:8443", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(hostname_of(host), name, "{host}");
        }
    }
}
