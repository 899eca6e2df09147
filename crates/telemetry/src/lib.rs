//! What moat reports: an event stream (every handshake, request, relay and reload; an edge's agents
//! and endpoints) that several subscribers consume, the audit log and the Prometheus metrics first;
//! health probes and expiry warnings; and reading the audit log back for a periodic review
//! ([`report`]). One [`Telemetry`] is shared by every endpoint of the process,
//! and by the edge and the agent that will reuse the gateway.
//!
//! ```text
//! gateway handshake ──> Telemetry::handshake_* ─┐
//! http request done ──> RequestAudit::finish   ─┤
//! tls relay, reload ──> Telemetry::*           ─┼─> Event ──> Metrics   (moat_handshakes_total, ...)
//! edge agents       ──> Telemetry::agent_*     ─┤         ──> AuditLog  (tls_handshake, http_request,
//! edge endpoints    ──> Telemetry::endpoint_*  ─┘                        agent_connected, ...)
//!                                                          ──> any Subscriber added later
//! MetricsServer     ──> /metrics /healthz /readyz
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod connection;
pub mod events;
pub mod expiry;
pub mod health;
pub mod metrics;
pub mod presented;
pub mod reasons;
pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use audit::{AuditLog, HttpRequestEvent};
pub use connection::ConnectionInfo;
pub use events::{Event, Subscriber};
use expiry::{EXPIRY_WARNING_WINDOW, ExpiringItem};
pub use metrics::ReloadOutcome;
use metrics::{Metrics, OpenConnection, OpenTunnelStream};
use presented::Presented;
pub use reasons::{AgentDisconnect, EndpointRemoval, HandshakeRefusal};

/// The process's event stream, metrics and readiness; cheap to clone, every clone shares them.
#[derive(Debug, Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

impl Default for Telemetry {
    /// Metrics only, no audit log.
    fn default() -> Telemetry {
        Telemetry::new(None)
    }
}

#[derive(Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    /// Everyone the events go to; the metrics and the audit log from the start.
    subscribers: ArcSwap<Vec<Arc<dyn Subscriber>>>,
    /// True while every endpoint is bound and accepting (false during startup and shutdown).
    ready: AtomicBool,
}

impl Telemetry {
    /// The metrics, plus audit events written to `audit` when given (none are written otherwise),
    /// subscribed to the event stream.
    pub fn new(audit: Option<AuditLog>) -> Telemetry {
        let mut metrics = Metrics::new();
        if let Some(audit) = &audit {
            metrics.register_audit_drops(audit.dropped().clone());
        }
        let metrics = Arc::new(metrics);
        let mut subscribers: Vec<Arc<dyn Subscriber>> = vec![metrics.clone()];
        if let Some(audit) = &audit {
            subscribers.push(Arc::new(audit.clone()));
        }
        Telemetry {
            shared: Arc::new(Shared {
                metrics,
                audit,
                subscribers: ArcSwap::from_pointee(subscribers),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The audit stream, when one is configured.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.shared.audit.as_ref()
    }

    /// Marks the process ready (every endpoint accepting) or not, for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    /// Counts a configuration reload in `moat_config_reloads_total{outcome}`.
    pub fn config_reloaded(&self, outcome: ReloadOutcome) {
        self.emit(&Event::ConfigReloaded(outcome));
    }

    /// Publishes the expiry gauges of every certificate, CA and CRL in use (replacing the
    /// previous set), tells the subscribers ([`Event::CertificatesInUse`]) and warns in the log
    /// about those expiring within 14 days. Called at startup and after each reload with the
    /// items of every endpoint.
    pub fn track_certificates(&self, items: &[ExpiringItem]) {
        self.shared.metrics.set_certificate_expiry(items);
        self.emit(&Event::CertificatesInUse(items));
        expiry::warn_expiring(
            items,
            time::OffsetDateTime::now_utc(),
            EXPIRY_WARNING_WINDOW,
        );
    }

    /// Records an accepted handshake and counts the connection as open while the guard lives.
    pub fn handshake_accepted(
        &self,
        info: &ConnectionInfo,
        cipher_suite: Option<&str>,
        alpn: Option<&str>,
    ) -> OpenConnection {
        self.emit(&Event::HandshakeAccepted {
            info,
            cipher_suite,
            alpn,
        });
        self.shared.metrics.connection_opened(&info.endpoint)
    }

    /// Records a refused handshake with what the client presented before it ended.
    pub fn handshake_refused(
        &self,
        endpoint: &str,
        peer: SocketAddr,
        reason: HandshakeRefusal,
        presented: &Presented,
    ) {
        self.emit(&Event::HandshakeRefused {
            endpoint,
            peer,
            reason,
            presented,
        });
    }

    /// Adds bytes forwarded for a `tls` endpoint's connection.
    pub fn forwarded_bytes(&self, endpoint: &str, from_client: u64, to_client: u64) {
        self.emit(&Event::BytesForwarded {
            endpoint,
            from_client,
            to_client,
        });
    }

    /// Records that an agent opened its session with the edge.
    pub fn agent_connected(&self, agent: &str, address: SocketAddr, serial: &str) {
        self.emit(&Event::AgentConnected {
            agent,
            address,
            serial,
        });
    }

    /// Records that an agent's session with the edge ended, why (`reason`) and how (`detail`).
    pub fn agent_disconnected(
        &self,
        agent: &str,
        address: SocketAddr,
        reason: AgentDisconnect,
        detail: &str,
    ) {
        self.emit(&Event::AgentDisconnected {
            agent,
            address,
            reason,
            detail,
        });
    }

    /// Records that the edge serves `hostname` for `agent`.
    pub fn endpoint_published(
        &self,
        hostname: &str,
        agent: &str,
        kind: &str,
        terminate_at: &str,
        pool: bool,
    ) {
        self.emit(&Event::EndpointPublished {
            hostname,
            agent,
            kind,
            terminate_at,
            pool,
        });
    }

    /// Records that the edge no longer serves `hostname` for `agent`.
    pub fn endpoint_removed(&self, hostname: &str, agent: &str, reason: EndpointRemoval) {
        self.emit(&Event::EndpointRemoved {
            hostname,
            agent,
            reason,
        });
    }

    /// Counts a stream to an agent as open for `endpoint` while the guard lives.
    pub fn tunnel_stream_opened(&self, endpoint: &str) -> OpenTunnelStream {
        self.shared.metrics.tunnel_stream_opened(endpoint)
    }

    /// Adds `subscriber` to the stream: it receives every event from now on.
    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        self.shared.subscribers.rcu(|subscribers| {
            let mut subscribers = Vec::clone(subscribers);
            subscribers.push(Arc::clone(&subscriber));
            subscribers
        });
    }

    /// Hands `event` to every subscriber.
    pub fn emit(&self, event: &Event<'_>) {
        for subscriber in self.shared.subscribers.load().iter() {
            subscriber.on_event(event);
        }
    }
}

/// One HTTP request on its way: what its audit event and metrics need once the response ends.
#[derive(Debug)]
pub struct RequestAudit {
    /// Where to report.
    pub telemetry: Telemetry,
    /// When its headers arrived.
    pub started: Instant,
    /// The event, completed by [`RequestAudit::finish`].
    pub event: HttpRequestEvent,
}

impl RequestAudit {
    /// Completes the event with the body byte counts and writes it; counts the request.
    pub fn finish(mut self, bytes_in: u64, bytes_out: u64) {
        let elapsed = self.started.elapsed();
        self.event.time = audit::now_rfc3339();
        self.event.duration_ms = elapsed.as_secs_f64() * 1000.0;
        self.event.bytes_in = bytes_in;
        self.event.bytes_out = bytes_out;
        self.telemetry.emit(&Event::RequestFinished(&self.event));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keeps the name of every event it receives.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Subscriber for Recorder {
        fn on_event(&self, event: &Event<'_>) {
            let name = match event {
                Event::HandshakeRefused { reason, .. } => format!("refused {reason}"),
                Event::ConfigReloaded(outcome) => format!("reloaded {outcome:?}"),
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push(name);
        }
    }

    #[test]
    fn every_subscriber_receives_every_event_alongside_the_metrics() {
        let telemetry = Telemetry::default();
        let first = Arc::new(Recorder::default());
        let second = Arc::new(Recorder::default());
        telemetry.subscribe(first.clone());
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        telemetry.handshake_refused(
            "app",
            peer,
            HandshakeRefusal::ConnectionLimit,
            &Presented::default(),
        );
        telemetry.subscribe(second.clone());
        telemetry.config_reloaded(ReloadOutcome::Failure);

        assert_eq!(
            *first.0.lock().unwrap(),
            ["refused connection_limit", "reloaded Failure"]
        );
        // A subscriber sees the events from when it subscribed.
        assert_eq!(*second.0.lock().unwrap(), ["reloaded Failure"]);
        let text = telemetry.metrics().render();
        assert!(
            text.contains(
                "moat_handshakes_total{endpoint=\"app\",outcome=\"refused\",reason=\"connection_limit\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("moat_config_reloads_total{outcome=\"failure\"} 1"),
            "{text}"
        );
    }
}
