//! The inspector's state: the exchanges and refused handshakes it keeps, what the process
//! serves, and replays.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{Method, Request};
use http_body_util::BodyExt as _;
use moat_proxy::http::inspect::{Exchange, ReplayMark, RequestObserver};
use moat_telemetry::events::{Event, Subscriber};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::entry::{Entry, rfc3339};
use crate::feed::{FEED_BACKLOG, frame};
use crate::filters::Filter;
use crate::refusals::RefusedHandshake;
use crate::ring::Ring;
use crate::stats::{RateWindow, quantile};

/// How long a replay's response may take to arrive whole before the inspector stops reading
/// it (a stream that never ends); what arrived is kept.
const REPLAY_READ_LIMIT: Duration = Duration::from_secs(30);

/// What the inspector keeps (flags `--inspect-max-requests`, `--inspect-max-bytes`,
/// `--inspect-max-body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectorLimits {
    /// Exchanges kept (and as many refused handshakes); the oldest go first.
    pub max_requests: usize,
    /// Bytes the kept exchanges may hold in all (headers and captured bodies).
    pub max_bytes: usize,
    /// Bytes of each body (request and response) kept; the rest is counted only.
    pub max_body: usize,
}

impl Default for InspectorLimits {
    /// 500 exchanges, 32 MiB, 64 KiB per body: a few minutes of a busy development server in
    /// at most 32 MiB.
    fn default() -> InspectorLimits {
        InspectorLimits {
            max_requests: 500,
            max_bytes: 32 << 20,
            max_body: 64 << 10,
        }
    }
}

/// An endpoint the process serves, for `/api/tunnels` and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEndpoint {
    /// Its name.
    pub name: String,
    /// `http` or `tls`.
    pub kind: String,
    /// Where clients reach it (the edge's URL once published).
    pub url: String,
    /// The service behind it.
    pub upstream: String,
}

/// A session with an edge, for the status page (`moat http --edge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLink {
    /// The edge's address.
    pub edge: String,
    /// True while the session is up.
    pub connected: bool,
    /// When it last connected or disconnected.
    pub since: SystemTime,
    /// Why it disconnected, when it did.
    pub detail: Option<String>,
}

/// The request inspector: cheap to clone; every clone shares one state.
#[derive(Debug, Clone)]
pub struct Inspector {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: InspectorLimits,
    ring: Mutex<Ring>,
    refusals: Mutex<VecDeque<Arc<RefusedHandshake>>>,
    rate: Mutex<RateWindow>,
    refused_total: AtomicU64,
    /// Ids are this process's prefix and a counter, so a page left open across a restart does
    /// not mix two processes' ids.
    id_prefix: u32,
    next_id: AtomicU64,
    next_replay: AtomicU64,
    feed: broadcast::Sender<Bytes>,
    started: SystemTime,
    endpoints: Mutex<Vec<ServedEndpoint>>,
    edges: Mutex<BTreeMap<String, EdgeLink>>,
}

/// Why a replay was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    #[error("no captured request has id {0:?} (it may have left the ring)")]
    NotFound(String),
    #[error(
        "the captured request body is truncated ({captured} of {size} bytes; --inspect-max-body): \
         give the body to send in the replay's changes"
    )]
    BodyTruncated { captured: usize, size: u64 },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("this request cannot be replayed")]
    Unavailable,
    #[error(
        "this request was admitted by the edge (TLS ended there): it can be replayed as \
         captured, but a changed request must go through the edge, from a client"
    )]
    ChangesNeedTheEdge,
}

/// A replay's changes to the captured request (`modify` in the API).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayChanges {
    pub method: Option<String>,
    /// Path and query, starting with `/`.
    pub path: Option<String>,
    /// Header name → value, or `null` to remove it.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// The body, as text.
    pub body: Option<String>,
    /// The body, base64 (for bytes that are not text).
    pub body_base64: Option<String>,
}

impl ReplayChanges {
    /// True when nothing is changed.
    fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.path.is_none()
            && self.headers.is_empty()
            && self.body.is_none()
            && self.body_base64.is_none()
    }
}

impl Inspector {
    /// An inspector keeping at most `limits`.
    pub fn new(limits: InspectorLimits) -> Inspector {
        let started = SystemTime::now();
        let id_prefix = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos() ^ (since.as_secs() as u32));
        Inspector {
            shared: Arc::new(Shared {
                limits,
                ring: Mutex::new(Ring::new(limits.max_requests, limits.max_bytes)),
                refusals: Mutex::new(VecDeque::new()),
                rate: Mutex::new(RateWindow::default()),
                refused_total: AtomicU64::new(0),
                id_prefix,
                next_id: AtomicU64::new(1),
                next_replay: AtomicU64::new(1),
                feed: broadcast::channel(FEED_BACKLOG).0,
                started,
                endpoints: Mutex::new(Vec::new()),
                edges: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// What it keeps.
    pub fn limits(&self) -> InspectorLimits {
        self.shared.limits
    }

    /// The endpoints the process serves (replacing those given before).
    pub fn set_endpoints(&self, endpoints: Vec<ServedEndpoint>) {
        *lock(&self.shared.endpoints) = endpoints;
        self.announce("status", &json!({}));
    }

    /// An endpoint is reachable at `url` (the edge published it).
    pub fn endpoint_published(&self, name: &str, url: &str) {
        for endpoint in lock(&self.shared.endpoints).iter_mut() {
            if endpoint.name == name {
                url.clone_into(&mut endpoint.url);
            }
        }
        self.announce("status", &json!({}));
    }

    /// The session with `edge` is up (`connected`) or down, with why.
    pub fn edge_link(&self, edge: &str, connected: bool, detail: Option<String>) {
        lock(&self.shared.edges).insert(
            edge.to_owned(),
            EdgeLink {
                edge: edge.to_owned(),
                connected,
                since: SystemTime::now(),
                detail,
            },
        );
        self.announce("status", &json!({}));
    }

    fn new_id(&self) -> String {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:08x}", self.shared.id_prefix, n)
    }

    fn announce(&self, event: &str, data: &Value) {
        // No page listening is not an error.
        let _ = self.shared.feed.send(frame(event, data));
    }

    /// New events from now on, as SSE frames.
    pub(crate) fn follow(&self) -> broadcast::Receiver<Bytes> {
        self.shared.feed.subscribe()
    }

    /// The exchanges `filter` keeps, newest first.
    pub(crate) fn list(&self, filter: &Filter) -> Vec<Value> {
        lock(&self.shared.ring)
            .newest_first()
            .filter(|entry| filter.keeps(entry))
            .take(filter.limit)
            .map(|entry| entry.summary())
            .collect()
    }

    pub(crate) fn find(&self, id: &str) -> Option<Arc<Entry>> {
        lock(&self.shared.ring).find(id)
    }

    /// Forgets every exchange and refused handshake.
    pub(crate) fn clear(&self) {
        lock(&self.shared.ring).clear();
        lock(&self.shared.refusals).clear();
        self.announce("cleared", &json!({}));
    }

    /// Refused handshakes, newest first.
    pub(crate) fn refusals(&self, limit: usize) -> Vec<Value> {
        lock(&self.shared.refusals)
            .iter()
            .rev()
            .take(limit)
            .map(|refusal| refusal.to_json())
            .collect()
    }

    /// ngrok's `/api/tunnels`.
    pub(crate) fn tunnels(&self) -> Value {
        let tunnels: Vec<Value> = lock(&self.shared.endpoints)
            .iter()
            .map(|endpoint| {
                json!({
                    "name": endpoint.name,
                    "uri": format!("/api/tunnels/{}", endpoint.name),
                    "public_url": endpoint.url,
                    "proto": if endpoint.kind == "http" { "https" } else { "tls" },
                    "config": { "addr": endpoint.upstream, "inspect": endpoint.kind == "http" },
                })
            })
            .collect();
        json!({ "tunnels": tunnels, "uri": "/api/tunnels" })
    }

    /// The status page: uptime, endpoints, edge sessions, request rate and latency.
    pub(crate) fn status(&self) -> Value {
        let now = SystemTime::now();
        let uptime = now
            .duration_since(self.shared.started)
            .unwrap_or_default()
            .as_secs_f64();
        let second = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let (last_minute, total) = {
            let mut rate = lock(&self.shared.rate);
            (rate.last_minute(second), rate.total())
        };
        let (kept, kept_bytes, mut durations) = {
            let ring = lock(&self.shared.ring);
            let durations: Vec<f64> = ring
                .newest_first()
                .filter(|entry| entry.forwarded)
                .map(|entry| entry.duration_ms())
                .collect();
            (ring.len(), ring.bytes(), durations)
        };
        durations.sort_by(f64::total_cmp);
        let endpoints: Vec<Value> = lock(&self.shared.endpoints)
            .iter()
            .map(|endpoint| {
                json!({
                    "name": endpoint.name,
                    "kind": endpoint.kind,
                    "url": endpoint.url,
                    "upstream": endpoint.upstream,
                })
            })
            .collect();
        let edges: Vec<Value> = lock(&self.shared.edges)
            .values()
            .map(|link| {
                json!({
                    "edge": link.edge,
                    "connected": link.connected,
                    "since": rfc3339(link.since),
                    "detail": link.detail,
                })
            })
            .collect();
        let limits = self.shared.limits;
        json!({
            "started": rfc3339(self.shared.started),
            "uptime_seconds": uptime,
            "endpoints": endpoints,
            "edges": edges,
            "requests": {
                "total": total,
                "last_minute": last_minute,
                "per_second": last_minute as f64 / 60.0,
                "kept": kept,
                "kept_bytes": kept_bytes,
                "latency_ms": {
                    "count": durations.len(),
                    "p50": quantile(&durations, 0.50),
                    "p90": quantile(&durations, 0.90),
                    "p95": quantile(&durations, 0.95),
                    "p99": quantile(&durations, 0.99),
                },
            },
            "refused_handshakes": self.shared.refused_total.load(Ordering::Relaxed),
            "limits": {
                "max_requests": limits.max_requests,
                "max_bytes": limits.max_bytes,
                "max_body": limits.max_body,
            },
        })
    }

    /// Sends the captured request `id` again, with `changes`, as its client (the rules judge it
    /// again; identity headers are the client's whatever the changes say) and returns the
    /// exchange it became.
    pub(crate) async fn replay(
        &self,
        id: &str,
        changes: ReplayChanges,
    ) -> Result<Arc<Entry>, ReplayError> {
        let entry = self
            .find(id)
            .ok_or_else(|| ReplayError::NotFound(id.to_owned()))?;
        let target = entry
            .target_of_replay
            .clone()
            .ok_or(ReplayError::Unavailable)?;
        if target.judged_at_the_edge() && !changes.is_empty() {
            return Err(ReplayError::ChangesNeedTheEdge);
        }
        let request = replayed_request(&entry, changes)?;
        let token = self.shared.next_replay.fetch_add(1, Ordering::Relaxed);
        let mark = ReplayMark {
            original: entry.id.clone(),
            token,
        };
        let response = target.send(request, mark).await;
        let mut body = response.into_body();
        // Reading the body to its end (or dropping it) is what hands the exchange over.
        let _ = tokio::time::timeout(REPLAY_READ_LIMIT, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
        drop(body);
        lock(&self.shared.ring)
            .find_replay(token)
            .ok_or(ReplayError::Unavailable)
    }
}

/// The captured request with `changes` applied, ready to send again.
fn replayed_request(entry: &Entry, changes: ReplayChanges) -> Result<Request<Bytes>, ReplayError> {
    let invalid = |field: &str, reason: String| ReplayError::Invalid {
        field: field.to_owned(),
        reason,
    };
    let method = match changes.method.as_deref().map(str::trim) {
        None | Some("") => entry.method.clone(),
        Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid("modify.method", format!("{method:?} is not an HTTP method")))?,
    };
    let path = match changes.path.as_deref().map(str::trim) {
        None | Some("") => entry.target.clone(),
        Some(path) if path.starts_with('/') => path.to_owned(),
        Some(path) => {
            return Err(invalid(
                "modify.path",
                format!("{path:?} must start with / (a path and query, no scheme or host)"),
            ));
        }
    };
    let body = match (&changes.body, &changes.body_base64) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "modify.body",
                "give body or body_base64, not both".to_owned(),
            ));
        }
        (Some(text), None) => Bytes::from(text.clone()),
        (None, Some(encoded)) => {
            use base64::Engine as _;
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|error| invalid("modify.body_base64", error.to_string()))?,
            )
        }
        (None, None) => {
            if entry.request_body.truncated() {
                return Err(ReplayError::BodyTruncated {
                    captured: entry.request_body.bytes.len(),
                    size: entry.request_body.total,
                });
            }
            entry.request_body.bytes.clone()
        }
    };
    let mut headers = entry.request_headers.clone();
    // The body is sent whole, with its own length.
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    if !headers.contains_key(HOST)
        && let Some(host) = entry
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(HOST, host);
    }
    for (name, value) in &changes.headers {
        let field = format!("modify.headers.{name}");
        let header = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid(&field, "not a valid header name".to_owned()))?;
        match value {
            None => {
                headers.remove(&header);
            }
            Some(value) => {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| invalid(&field, "not a valid header value".to_owned()))?;
                headers.insert(header, value);
            }
        }
    }
    let mut request = Request::builder()
        .method(method)
        .uri(&path)
        .body(body)
        .map_err(|error| invalid("modify.path", error.to_string()))?;
    *request.headers_mut() = headers;
    Ok(request)
}

impl RequestObserver for Inspector {
    fn body_limit(&self) -> usize {
        self.shared.limits.max_body
    }

    fn observe(&self, exchange: Exchange) {
        let entry = Arc::new(Entry::new(self.new_id(), exchange));
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        lock(&self.shared.rate).record(second);
        let summary = (self.shared.feed.receiver_count() > 0).then(|| entry.summary());
        lock(&self.shared.ring).push(entry);
        if let Some(summary) = summary {
            self.announce("request", &summary);
        }
    }
}

impl Subscriber for Inspector {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::HandshakeRefused {
            endpoint,
            peer,
            reason,
            presented,
        } = event
        {
            let refusal = Arc::new(RefusedHandshake::new(
                self.new_id(),
                endpoint,
                *peer,
                *reason,
                presented,
            ));
            self.shared.refused_total.fetch_add(1, Ordering::Relaxed);
            let json = refusal.to_json();
            {
                let mut refusals = lock(&self.shared.refusals);
                refusals.push_back(refusal);
                while refusals.len() > self.shared.limits.max_requests {
                    refusals.pop_front();
                }
            }
            self.announce("refusal", &json);
        }
    }
}

/// A lock whose holder panicked still guards consistent data here (each update is one step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::sample;

    #[test]
    fn changes_apply_to_the_captured_request() {
        let mut entry = sample("a");
        entry
            .request_headers
            .insert("x-mode", HeaderValue::from_static("old"));
        entry
            .request_headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        entry.request_body.bytes = Bytes::from_static(b"abc");
        entry.request_body.total = 3;
        let changes = ReplayChanges {
            method: Some("post".to_owned()),
            path: Some("/other?x=1".to_owned()),
            headers: BTreeMap::from([
                ("X-Mode".to_owned(), Some("new".to_owned())),
                ("x-gone".to_owned(), None),
            ]),
            body: Some("hello".to_owned()),
            body_base64: None,
        };
        let request = replayed_request(&entry, changes).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/other?x=1");
        assert_eq!(request.headers()["x-mode"], "new");
        assert_eq!(request.headers()[HOST], "localhost");
        assert!(request.headers().get(CONTENT_LENGTH).is_none());
        assert_eq!(&request.body()[..], b"hello");
    }

    #[test]
    fn a_truncated_body_is_not_replayed_unless_replaced() {
        let mut entry = sample("a");
        entry.request_body.bytes = Bytes::from_static(b"abc");
        entry.request_body.total = 10;
        assert!(matches!(
            replayed_request(&entry, ReplayChanges::default()),
            Err(ReplayError::BodyTruncated {
                captured: 3,
                size: 10
            })
        ));
        let with_body = ReplayChanges {
            body: Some("x".to_owned()),
            ..ReplayChanges::default()
        };
        assert!(replayed_request(&entry, with_body).is_ok());
    }

    #[test]
    fn bad_changes_name_their_field() {
        let entry = sample("a");
        for (changes, field) in [
            (
                ReplayChanges {
                    path: Some("http://elsewhere/".to_owned()),
                    ..ReplayChanges::default()
                },
                "modify.path",
            ),
            (
                ReplayChanges {
                    method: Some("GE T".to_owned()),
                    ..ReplayChanges::default()
                },
                "modify.method",
            ),
            (
                ReplayChanges {
                    headers: BTreeMap::from([("bad name".to_owned(), Some("v".to_owned()))]),
                    ..ReplayChanges::default()
                },
                "modify.headers.bad name",
            ),
        ] {
            match replayed_request(&entry, changes) {
                Err(ReplayError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
