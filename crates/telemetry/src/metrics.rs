//! The Prometheus metrics of the gateway, kept in one registry and rendered as OpenMetrics text.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::events::{Event, Subscriber};
use crate::expiry::ExpiringItem;
use crate::reasons::{EndpointRemoval, HandshakeRefusal};

/// The `Content-Type` of [`Metrics::render`]'s output; Prometheus scrapes it natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the request duration buckets, in seconds: Prometheus's customary defaults,
/// which span a fast local upstream to a slow report.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How config reloads ended, as the `outcome` label of `moat_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration was validated and is now in use.
    Success,
    /// The new configuration was refused; the running one stays.
    Failure,
}

impl ReloadOutcome {
    /// The stable name: `success` or `failure` (the metric's label and the audit event's `outcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Success => "success",
            ReloadOutcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    endpoint: String,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status_class: &'static str,
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    endpoint: String,
    kind: &'static str,
    subject: String,
    file: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Every metric moat exports. Cheap to share: the families are reference-counted handles into
/// the one registry.
#[derive(Debug)]
pub struct Metrics {
    /// Locked only to render and to add the edge's metrics.
    registry: Mutex<Registry>,
    handshakes: Family<HandshakeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    open_connections: Family<EndpointLabels, Gauge>,
    received_bytes: Family<EndpointLabels, Counter>,
    sent_bytes: Family<EndpointLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    certificate_expiry: Family<ExpiryLabels, Gauge>,
    /// The edge's metrics: counted by every process, exported only by an edge.
    edge: EdgeMetrics,
}

/// What an edge adds: its agents, their endpoints and the streams to them.
#[derive(Debug, Default)]
struct EdgeMetrics {
    agents_connected: Gauge,
    endpoints_published: Gauge,
    streams_open: Family<EndpointLabels, Gauge>,
    registered: OnceLock<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every family registered and the reload outcomes at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "moat_handshakes",
            "TLS handshakes by endpoint, outcome (accepted, refused) and refusal reason",
            handshakes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "moat_requests",
            "HTTP requests by endpoint, status class (2xx..5xx) and the policy rule that decided",
            requests.clone(),
        );
        let request_duration =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register_with_unit(
            "moat_request_duration",
            "Time from a request's headers to the end of its response",
            Unit::Seconds,
            request_duration.clone(),
        );
        let open_connections = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "moat_open_connections",
            "Client connections past their TLS handshake and not yet closed",
            open_connections.clone(),
        );
        let received_bytes = Family::<EndpointLabels, Counter>::default();
        registry.register_with_unit(
            "moat_received",
            "Bytes received from clients: request bodies (http) or forwarded bytes (tls)",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let sent_bytes = Family::<EndpointLabels, Counter>::default();
        registry.register_with_unit(
            "moat_sent",
            "Bytes sent to clients: response bodies (http) or forwarded bytes (tls)",
            Unit::Bytes,
            sent_bytes.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "moat_config_reloads",
            "Configuration reloads by outcome (success, failure)",
            config_reloads.clone(),
        );
        for outcome in [ReloadOutcome::Success, ReloadOutcome::Failure] {
            drop(config_reloads.get_or_create(&ReloadLabels {
                outcome: outcome.as_str(),
            }));
        }
        let certificate_expiry = Family::<ExpiryLabels, Gauge>::default();
        registry.register_with_unit(
            "moat_certificate_expiry_timestamp",
            "When each server certificate, CA and CRL in use runs out (notAfter, or a CRL's \
             nextUpdate), as a Unix time",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            handshakes,
            requests,
            request_duration,
            open_connections,
            received_bytes,
            sent_bytes,
            config_reloads,
            certificate_expiry,
            edge: EdgeMetrics::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the edge's metrics to the export (once; later calls change nothing), so that only
    /// an edge shows them: the agents connected, the endpoints they publish, the tunnel
    /// streams open per endpoint.
    pub fn register_edge(&self) {
        self.edge.registered.get_or_init(|| {
            let mut registry = self.registry();
            registry.register(
                "moat_edge_agents_connected",
                "Agents with a session open on this edge",
                self.edge.agents_connected.clone(),
            );
            registry.register(
                "moat_edge_endpoints_published",
                "Endpoints agents publish on this edge (a hostname pooled by several agents \
                 counts once per agent)",
                self.edge.endpoints_published.clone(),
            );
            registry.register(
                "moat_tunnel_streams_open",
                "Streams open to agents, by the endpoint they serve",
                self.edge.streams_open.clone(),
            );
        });
    }

    /// Counts a stream to an agent as open for `endpoint` until the returned guard is dropped.
    pub fn tunnel_stream_opened(self: &Arc<Self>, endpoint: &str) -> OpenTunnelStream {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.edge.streams_open.get_or_create(&labels).inc();
        OpenTunnelStream {
            metrics: Arc::clone(self),
            labels,
        }
    }

    /// Exports the audit log's count of dropped events as `moat_audit_events_dropped_total`, so
    /// that an alert can fire when the audit trail has gaps.
    pub fn register_audit_drops(&mut self, dropped: Counter) {
        self.registry
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .register(
                "moat_audit_events_dropped",
                "Audit events lost because the audit log could not keep up",
                dropped,
            );
    }

    /// Creates an endpoint's series at zero, so that dashboards and `rate()` see them before the
    /// first event.
    pub fn register_endpoint(&self, endpoint: &str) {
        drop(self.handshakes.get_or_create(&HandshakeLabels {
            endpoint: endpoint.to_owned(),
            outcome: "accepted",
            reason: "",
        }));
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        drop(self.open_connections.get_or_create(&labels));
        drop(self.received_bytes.get_or_create(&labels));
        drop(self.sent_bytes.get_or_create(&labels));
    }

    /// Counts one accepted handshake.
    pub fn handshake_accepted(&self, endpoint: &str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                endpoint: endpoint.to_owned(),
                outcome: "accepted",
                reason: "",
            })
            .inc();
    }

    /// Counts one refused handshake under its reason.
    pub fn handshake_refused(&self, endpoint: &str, reason: HandshakeRefusal) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                endpoint: endpoint.to_owned(),
                outcome: "refused",
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one finished HTTP request: its status class, the rule that decided (empty while
    /// no policy decides), how long it took and its body bytes.
    pub fn request_finished(&self, request: &FinishedRequest<'_>) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: request.endpoint.to_owned(),
                status_class: status_class(request.status),
                rule: request.rule.unwrap_or_default().to_owned(),
            })
            .inc();
        let labels = EndpointLabels {
            endpoint: request.endpoint.to_owned(),
        };
        self.request_duration
            .get_or_create(&labels)
            .observe(request.duration_seconds);
        self.add_bytes(request.endpoint, request.bytes_in, request.bytes_out);
    }

    /// Adds bytes received from and sent to clients of `endpoint`.
    pub fn add_bytes(&self, endpoint: &str, received: u64, sent: u64) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.received_bytes.get_or_create(&labels).inc_by(received);
        self.sent_bytes.get_or_create(&labels).inc_by(sent);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(self: &Arc<Self>, endpoint: &str) -> OpenConnection {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.open_connections.get_or_create(&labels).inc();
        OpenConnection {
            metrics: Arc::clone(self),
            labels,
        }
    }

    /// Counts one configuration reload.
    pub fn config_reloaded(&self, outcome: ReloadOutcome) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Replaces the expiry gauges with `items`: after a reload, files no longer in use vanish.
    pub fn set_certificate_expiry(&self, items: &[ExpiringItem]) {
        self.certificate_expiry.clear();
        for item in items {
            self.certificate_expiry
                .get_or_create(&ExpiryLabels {
                    endpoint: item.endpoint.clone(),
                    kind: item.kind.as_str(),
                    subject: item.subject.clone(),
                    file: item.file.clone(),
                })
                .set(item.expires_at);
        }
    }

    /// The registry as OpenMetrics text (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoding error would only come from a label
        // value the registry already accepted, so the partial text is still served.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry()) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

impl Subscriber for Metrics {
    /// Counts handshakes, requests, bytes, reloads, agents and their endpoints.
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::HandshakeAccepted { info, .. } => self.handshake_accepted(&info.endpoint),
            Event::HandshakeRefused {
                endpoint, reason, ..
            } => self.handshake_refused(endpoint, reason),
            Event::RequestFinished(request) => self.request_finished(&FinishedRequest {
                endpoint: &request.endpoint,
                status: request.status,
                rule: request.rule.as_deref(),
                duration_seconds: request.duration_ms / 1000.0,
                bytes_in: request.bytes_in,
                bytes_out: request.bytes_out,
            }),
            Event::BytesForwarded {
                endpoint,
                from_client,
                to_client,
            } => self.add_bytes(endpoint, from_client, to_client),
            Event::ConfigReloaded(outcome) => self.config_reloaded(outcome),
            // The expiry gauges are set by Telemetry::track_certificates itself.
            Event::CertificatesInUse(_) => {}
            Event::AgentConnected { .. } => {
                self.edge.agents_connected.inc();
            }
            Event::AgentDisconnected { .. } => {
                self.edge.agents_connected.dec();
            }
            Event::EndpointPublished { .. } => {
                self.edge.endpoints_published.inc();
            }
            // A registration refused on load was never counted as published.
            Event::EndpointRemoved { reason, .. } => {
                if reason != EndpointRemoval::RefusedOnLoad {
                    self.edge.endpoints_published.dec();
                }
            }
        }
    }
}

/// What [`Metrics::request_finished`] counts about one request.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRequest<'a> {
    /// The endpoint's name.
    pub endpoint: &'a str,
    /// The response status sent to the client.
    pub status: u16,
    /// The policy rule that decided; `None` while no policy is configured.
    pub rule: Option<&'a str>,
    /// From the request's headers to the end of its response.
    pub duration_seconds: f64,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
}

/// Keeps one connection counted in `moat_open_connections` while it lives.
#[derive(Debug)]
pub struct OpenConnection {
    metrics: Arc<Metrics>,
    labels: EndpointLabels,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics
            .open_connections
            .get_or_create(&self.labels)
            .dec();
    }
}

/// Keeps one stream to an agent counted in `moat_tunnel_streams_open` while it lives.
#[derive(Debug)]
pub struct OpenTunnelStream {
    metrics: Arc<Metrics>,
    labels: EndpointLabels,
}

impl Drop for OpenTunnelStream {
    fn drop(&mut self) {
        self.metrics
            .edge
            .streams_open
            .get_or_create(&self.labels)
            .dec();
    }
}

/// `2xx`, `4xx`, ... for a status code.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_outcomes_are_exported_at_zero_before_any_reload() {
        let text = Metrics::new().render();
        assert!(
            text.contains("moat_config_reloads_total{outcome=\"success\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("moat_config_reloads_total{outcome=\"failure\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn open_connection_guard_counts_down_when_dropped() {
        let metrics = Arc::new(Metrics::new());
        let guard = metrics.connection_opened("app");
        assert!(
            metrics
                .render()
                .contains("moat_open_connections{endpoint=\"app\"} 1")
        );
        drop(guard);
        assert!(
            metrics
                .render()
                .contains("moat_open_connections{endpoint=\"app\"} 0")
        );
    }

    #[test]
    fn edge_metrics_are_exported_only_by_an_edge_and_follow_its_agents() {
        use std::net::SocketAddr;

        let metrics = Arc::new(Metrics::new());
        let address: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        metrics.on_event(&Event::AgentConnected {
            agent: "laptop",
            address,
            serial: "01",
        });
        assert!(!metrics.render().contains("moat_edge"), "not an edge yet");

        metrics.register_edge();
        metrics.register_edge();
        let published = |hostname| Event::EndpointPublished {
            hostname,
            agent: "laptop",
            kind: "http",
            terminate_at: "edge",
            pool: false,
        };
        let removed = |hostname, reason| Event::EndpointRemoved {
            hostname,
            agent: "laptop",
            reason,
        };
        metrics.on_event(&published("app.test"));
        metrics.on_event(&published("db.test"));
        // Rolled back: the registration was never served, nor counted.
        metrics.on_event(&removed("bad.test", EndpointRemoval::RefusedOnLoad));
        metrics.on_event(&removed("db.test", EndpointRemoval::Withdrawn));
        let stream = metrics.tunnel_stream_opened("app.test");
        let text = metrics.render();
        assert_eq!(text.matches("# TYPE moat_edge_agents_connected").count(), 1);
        assert!(text.contains("moat_edge_agents_connected 1\n"), "{text}");
        assert!(text.contains("moat_edge_endpoints_published 1\n"), "{text}");
        assert!(
            text.contains("moat_tunnel_streams_open{endpoint=\"app.test\"} 1"),
            "{text}"
        );

        drop(stream);
        metrics.on_event(&Event::AgentDisconnected {
            agent: "laptop",
            address,
            reason: crate::reasons::AgentDisconnect::Closed,
            detail: "the agent closed its session",
        });
        metrics.on_event(&removed("app.test", EndpointRemoval::AgentDisconnected));
        let text = metrics.render();
        assert!(text.contains("moat_edge_agents_connected 0\n"), "{text}");
        assert!(text.contains("moat_edge_endpoints_published 0\n"), "{text}");
        assert!(
            text.contains("moat_tunnel_streams_open{endpoint=\"app.test\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn expiry_gauges_of_items_no_longer_in_use_vanish() {
        use crate::expiry::ItemKind;

        let item = |endpoint: &str, file: &str| ExpiringItem {
            endpoint: endpoint.into(),
            kind: ItemKind::Ca,
            subject: "CN=Client CA".into(),
            file: file.into(),
            expires_at: 2_000_000_000,
        };
        let metrics = Metrics::new();
        metrics.set_certificate_expiry(&[
            item("app.test", "/edge/uploads/1-app.test/client-cas.pem"),
            item("local", "/etc/moat/cas.pem"),
        ]);
        assert!(metrics.render().contains("1-app.test/client-cas.pem"));
        metrics.set_certificate_expiry(&[item("local", "/etc/moat/cas.pem")]);
        let text = metrics.render();
        assert!(!text.contains("app.test"), "{text}");
        assert!(text.contains("/etc/moat/cas.pem"), "{text}");
    }

    #[test]
    fn status_codes_fall_into_their_class() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(403), "4xx");
        assert_eq!(status_class(502), "5xx");
    }
}
