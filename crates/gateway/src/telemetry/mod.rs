//! Telemetry: audit events for every handshake and request, Prometheus metrics, health probes and
//! expiry warnings, shared by every endpoint of the process.
//!
//! ```text
//! gateway handshake ──> Telemetry::handshake_* ──> audit (tls_handshake) + moat_handshakes_total
//! http request done ──> RequestAudit::finish   ──> audit (http_request)  + moat_requests_total, ...
//! MetricsServer     ──> /metrics /healthz /readyz
//! ```

pub mod audit;
pub mod expiry;
pub mod health;
pub mod metrics;
pub(crate) mod presented;
pub mod reasons;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use moat_trust::ClientIdentity;

use crate::connection::ConnectionInfo;
use audit::{AuditLog, CertificateFacts, HttpRequestEvent, Outcome, TlsHandshakeEvent};
use expiry::{EXPIRY_WARNING_WINDOW, ExpiringItem};
pub use metrics::ReloadOutcome;
use metrics::{FinishedRequest, Metrics, OpenConnection};
use presented::{Presented, PresentedCertificate};
pub use reasons::HandshakeRefusal;

/// The process's audit stream, metrics and readiness; cheap to clone, every clone shares them.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    /// True while every endpoint is bound and accepting (false during startup and shutdown).
    ready: AtomicBool,
}

impl Telemetry {
    /// Metrics, plus audit events written to `audit` when given (none are written otherwise).
    pub fn new(audit: Option<AuditLog>) -> Telemetry {
        let mut metrics = Metrics::new();
        if let Some(audit) = &audit {
            metrics.register_audit_drops(audit.dropped().clone());
        }
        Telemetry {
            shared: Arc::new(Shared {
                metrics: Arc::new(metrics),
                audit,
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
        self.shared.metrics.config_reloaded(outcome);
    }

    /// Publishes the expiry gauges of every certificate, CA and CRL in use (replacing the
    /// previous set) and warns in the log about those expiring within 14 days. Called at
    /// startup and after each reload with the items of every endpoint.
    pub fn track_certificates(&self, items: &[ExpiringItem]) {
        self.shared.metrics.set_certificate_expiry(items);
        expiry::warn_expiring(
            items,
            time::OffsetDateTime::now_utc(),
            EXPIRY_WARNING_WINDOW,
        );
    }

    /// Records an accepted handshake and counts the connection as open while the guard lives.
    pub(crate) fn handshake_accepted(
        &self,
        info: &ConnectionInfo,
        cipher_suite: Option<String>,
        alpn: Option<String>,
    ) -> OpenConnection {
        self.shared.metrics.handshake_accepted(&info.endpoint);
        if let Some(audit) = &self.shared.audit {
            audit.record(&TlsHandshakeEvent {
                event: "tls_handshake",
                time: audit::now_rfc3339(),
                endpoint: info.endpoint.clone(),
                peer: info.peer_addr,
                sni: info.sni.clone(),
                tls_version: Some(info.tls_version.to_owned()),
                cipher_suite,
                alpn,
                client_certificate: info.client.as_deref().map(CertificateFacts::of),
                outcome: Outcome::Accepted,
                reason: None,
            });
        }
        self.shared.metrics.connection_opened(&info.endpoint)
    }

    /// Records a refused handshake with what the client presented before it ended.
    pub(crate) fn handshake_refused(
        &self,
        endpoint: &str,
        peer: SocketAddr,
        reason: HandshakeRefusal,
        presented: &Presented,
    ) {
        self.shared.metrics.handshake_refused(endpoint, reason);
        if let Some(audit) = &self.shared.audit {
            let client_certificate = match &presented.certificate {
                Some(PresentedCertificate::Read(identity)) => Some(CertificateFacts::of(identity)),
                Some(PresentedCertificate::Unread(certificate)) => {
                    ClientIdentity::from_chain(std::slice::from_ref(certificate))
                        .ok()
                        .map(|identity| CertificateFacts::of(&identity))
                }
                None => None,
            };
            audit.record(&TlsHandshakeEvent {
                event: "tls_handshake",
                time: audit::now_rfc3339(),
                endpoint: endpoint.to_owned(),
                peer,
                sni: presented.sni.clone(),
                tls_version: None,
                cipher_suite: None,
                alpn: None,
                client_certificate,
                outcome: Outcome::Refused,
                reason: Some(reason.as_str()),
            });
        }
    }

    /// Adds bytes forwarded for a `tls` endpoint's connection.
    pub(crate) fn forwarded_bytes(&self, endpoint: &str, from_client: u64, to_client: u64) {
        self.shared
            .metrics
            .add_bytes(endpoint, from_client, to_client);
    }
}

/// One HTTP request on its way: what its audit event and metrics need once the response ends.
#[derive(Debug)]
pub(crate) struct RequestAudit {
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
        self.telemetry
            .shared
            .metrics
            .request_finished(&FinishedRequest {
                endpoint: &self.event.endpoint,
                status: self.event.status,
                rule: self.event.rule.as_deref(),
                duration_seconds: elapsed.as_secs_f64(),
                bytes_in,
                bytes_out,
            });
        if let Some(audit) = &self.telemetry.shared.audit {
            audit.record(&self.event);
        }
    }
}
