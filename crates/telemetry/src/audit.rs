//! Audit events: one JSON object per line for every TLS handshake, every HTTP request and every
//! configuration reload (and, on an edge, every agent session and every endpoint it publishes),
//! written to stdout or appended to a file in batches by a thread of their own.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use moat_trust::ClientIdentity;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::{Event, Subscriber};
use crate::presented::PresentedCertificate;

/// Encoded events waiting for the writer, in bytes; beyond this the gateway drops events (and
/// counts them) rather than stall connections behind a slow disk or a full stdout pipe. About
/// ten thousand events.
const PENDING_LIMIT: usize = 4 << 20;

/// How long the writer lets events gather after the first one arrives before it writes them all
/// with one `write(2)`. Waking a thread per event costs a context switch per request, which on a
/// gateway pinned to one core was a quarter of its time; batching makes it one per window, and
/// an event still reaches the log within a few milliseconds.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// A writer's buffer larger than this is released after its batch instead of being kept.
const RETAINED_BUFFER: usize = 256 << 10;

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output, one event per line.
    Stdout,
    /// A file, created if missing and appended to.
    File(PathBuf),
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file could not be opened for appending.
    #[error("{path}: cannot open the audit log for appending: {source}; check that its directory exists and is writable, or choose another audit log", path = path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit log writer: {0}")]
    Thread(#[source] std::io::Error),
}

/// The audit stream: cheap to clone; every clone feeds the same writer thread, which writes the
/// events gathered in a few milliseconds as whole lines and flushes them.
#[derive(Debug, Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the first event lands in an empty buffer, and on close.
    wake: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Events dropped because the buffer was full or the log closed; exported as
    /// `moat_audit_events_dropped_total`.
    dropped: Counter,
    /// Whether the first dropped event was already reported in the log.
    drop_reported: AtomicBool,
}

/// The events encoded since the writer last took them.
#[derive(Debug, Default)]
struct Pending {
    /// Whole lines, each ending in `\n`.
    lines: Vec<u8>,
    /// Set by [`AuditLog::close`]: later events are dropped.
    closed: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_dropped(&self) {
        self.dropped.inc();
        if !self.drop_reported.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "audit events are being dropped: the audit log cannot keep up (or is closed); \
                 check the disk or whatever reads moat's stdout"
            );
        }
    }
}

impl AuditLog {
    /// Opens `target` (a file is created with mode 0640 when missing, then appended to) and
    /// starts its writer thread.
    pub fn open(target: &AuditTarget) -> Result<AuditLog, AuditError> {
        let output: Box<dyn Write + Send> = match target {
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(path) => Box::new(open_append(path)?),
        };
        let name = match target {
            AuditTarget::Stdout => "stdout".to_owned(),
            AuditTarget::File(path) => path.display().to_string(),
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writer: Mutex::new(None),
            dropped: Counter::default(),
            drop_reported: AtomicBool::new(false),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("moat-audit".to_owned())
                .spawn(move || write_events(&shared, output, &name))
                .map_err(AuditError::Thread)?
        };
        *shared.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
        Ok(AuditLog { shared })
    }

    /// Adds one event to the next batch; never blocks on the output.
    pub fn record(&self, event: &impl Serialize) {
        let mut pending = self.shared.pending();
        if pending.closed || pending.lines.len() >= PENDING_LIMIT {
            drop(pending);
            self.shared.count_dropped();
            return;
        }
        let was_empty = pending.lines.is_empty();
        let start = pending.lines.len();
        // Encoded straight into the batch: no allocation per event. The newline travels with
        // the event, so a batch is always whole lines (stdout is shared with moat's messages).
        if let Err(error) = serde_json::to_writer(&mut pending.lines, event) {
            pending.lines.truncate(start);
            drop(pending);
            tracing::error!(%error, "cannot encode an audit event");
            return;
        }
        pending.lines.push(b'\n');
        drop(pending);
        if was_empty {
            self.shared.wake.notify_one();
        }
    }

    /// The count of dropped events, shared with the metrics registry.
    pub fn dropped(&self) -> &Counter {
        &self.shared.dropped
    }

    /// Writes every pending event, then stops the writer; events recorded afterwards are dropped.
    pub fn close(&self) {
        self.shared.pending().closed = true;
        self.shared.wake.notify_one();
        let writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, AuditError> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o640);
    }
    options.open(path).map_err(|source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The writer thread: sleeps until an event arrives, lets others gather for [`BATCH_WINDOW`],
/// then writes and flushes them together; returns once closed and drained.
fn write_events(shared: &Shared, mut output: Box<dyn Write + Send>, name: &str) {
    let mut batch = Vec::new();
    let mut failing = false;
    loop {
        {
            let mut pending = shared.pending();
            while pending.lines.is_empty() && !pending.closed {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.lines.is_empty() {
                return;
            }
            if !pending.closed {
                pending = shared
                    .wake
                    .wait_timeout_while(pending, BATCH_WINDOW, |pending| !pending.closed)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.lines, &mut batch);
        }
        let written = output.write_all(&batch).and_then(|()| output.flush());
        match written {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::error!(audit_log = name, %error, "cannot write audit events");
            }
            Err(_) => {}
        }
        batch.clear();
        if batch.capacity() > RETAINED_BUFFER {
            batch = Vec::new();
        }
    }
}

impl Subscriber for AuditLog {
    /// One line per handshake, request, reload, agent session change and published or removed
    /// endpoint; forwarded bytes are the metrics' alone.
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::HandshakeAccepted {
                info,
                cipher_suite,
                alpn,
            } => self.record(&TlsHandshakeEvent {
                event: "tls_handshake",
                time: now_rfc3339(),
                endpoint: info.endpoint.clone(),
                peer: info.peer_addr,
                sni: info.sni.clone(),
                tls_version: Some(info.tls_version.to_owned()),
                cipher_suite: cipher_suite.map(str::to_owned),
                alpn: alpn.map(str::to_owned),
                client_certificate: info.client.as_deref().map(CertificateFacts::of),
                outcome: Outcome::Accepted,
                reason: None,
            }),
            Event::HandshakeRefused {
                endpoint,
                peer,
                reason,
                presented,
            } => self.record(&TlsHandshakeEvent {
                event: "tls_handshake",
                time: now_rfc3339(),
                endpoint: endpoint.to_owned(),
                peer,
                sni: presented.sni.clone(),
                tls_version: None,
                cipher_suite: None,
                alpn: None,
                client_certificate: presented.certificate.as_ref().and_then(presented_facts),
                outcome: Outcome::Refused,
                reason: Some(reason.as_str()),
            }),
            Event::RequestFinished(request) => self.record(request),
            Event::AgentConnected {
                agent,
                address,
                serial,
            } => self.record(&AgentConnectedEvent {
                event: "agent_connected",
                time: now_rfc3339(),
                agent,
                agent_address: address,
                agent_serial: serial,
            }),
            Event::AgentDisconnected {
                agent,
                address,
                reason,
                detail,
            } => self.record(&AgentDisconnectedEvent {
                event: "agent_disconnected",
                time: now_rfc3339(),
                agent,
                agent_address: address,
                reason: reason.as_str(),
                detail,
            }),
            Event::EndpointPublished {
                hostname,
                agent,
                kind,
                terminate_at,
                pool,
            } => self.record(&EndpointPublishedEvent {
                event: "endpoint_published",
                time: now_rfc3339(),
                hostname,
                agent,
                kind,
                terminate_at,
                pool,
            }),
            Event::EndpointRemoved {
                hostname,
                agent,
                reason,
            } => self.record(&EndpointRemovedEvent {
                event: "endpoint_removed",
                time: now_rfc3339(),
                hostname,
                agent,
                reason: reason.as_str(),
            }),
            Event::ConfigReloaded(outcome) => self.record(&ConfigReloadedEvent {
                event: "config_reloaded",
                time: now_rfc3339(),
                outcome: outcome.as_str(),
            }),
            Event::BytesForwarded { .. } | Event::CertificatesInUse(_) => {}
        }
    }
}

/// What the audit event of a refused handshake tells of the certificate: all of it when the
/// verifier read it, else what can be read of it now.
fn presented_facts(certificate: &PresentedCertificate) -> Option<CertificateFacts> {
    match certificate {
        PresentedCertificate::Read(identity) => Some(CertificateFacts::of(identity)),
        PresentedCertificate::Unread(certificate) => {
            ClientIdentity::from_chain(std::slice::from_ref(certificate))
                .ok()
                .map(|identity| CertificateFacts::of(&identity))
        }
    }
}

/// The current time as RFC 3339 UTC, e.g. `2026-11-23T15:31:54.123456Z`.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// The client certificate as audit events describe it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint_sha256: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

impl CertificateFacts {
    /// The facts of a parsed certificate.
    pub fn of(identity: &ClientIdentity) -> CertificateFacts {
        let not_after = OffsetDateTime::from_unix_timestamp(identity.not_after)
            .ok()
            .and_then(|time| time.format(&Rfc3339).ok())
            .unwrap_or_default();
        CertificateFacts {
            subject: identity.subject.clone(),
            issuer: identity.issuer.clone(),
            serial: identity.serial_hex.clone(),
            fingerprint_sha256: identity.fingerprint_sha256.clone(),
            not_after,
        }
    }
}

/// `accepted` or `refused`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The handshake completed; the connection is served.
    Accepted,
    /// The handshake was aborted.
    Refused,
}

/// One TLS handshake, accepted or refused.
#[derive(Debug, Clone, Serialize)]
pub struct TlsHandshakeEvent {
    /// Always `tls_handshake`.
    pub event: &'static str,
    /// When the handshake ended, RFC 3339 UTC.
    pub time: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server name the client asked for; `null` when it sent none, or when the handshake
    /// failed before moat chose its certificate (e.g. `protocol_version`).
    pub sni: Option<String>,
    /// `TLSv1.3` or `TLSv1.2`; `null` for a refused handshake.
    pub tls_version: Option<String>,
    /// The negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`; `null` when refused.
    pub cipher_suite: Option<String>,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`); `null` when none.
    pub alpn: Option<String>,
    /// The certificate the client presented, accepted or not; `null` when it sent none.
    pub client_certificate: Option<CertificateFacts>,
    /// `accepted` or `refused`.
    pub outcome: Outcome,
    /// For refusals, the stable reason (see [`crate::HandshakeRefusal`]); `null` when accepted.
    pub reason: Option<&'static str>,
}

/// One HTTP request, written when its response has been sent (or abandoned).
#[derive(Debug, Clone, Serialize)]
pub struct HttpRequestEvent {
    /// Always `http_request`.
    pub event: &'static str,
    /// When the response ended, RFC 3339 UTC.
    pub time: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The request method.
    pub method: String,
    /// The host the client addressed (`:authority` or `Host`).
    pub host: Option<String>,
    /// The request path, without the query.
    pub path: String,
    /// The status sent to the client.
    pub status: u16,
    /// The policy rule that decided; `null` while no policy decides.
    pub rule: Option<String>,
    /// The verified client certificate's subject; `null` without one.
    pub client_subject: Option<String>,
    /// Time until the upstream's response headers, in milliseconds; `null` when the request
    /// never went upstream (refused, or answered by moat).
    pub upstream_ms: Option<f64>,
    /// Time from the request's headers to the end of its response, in milliseconds.
    pub duration_ms: f64,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
}

/// An agent opened its session with the edge.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConnectedEvent<'a> {
    /// Always `agent_connected`.
    pub event: &'static str,
    /// When the session opened, RFC 3339 UTC.
    pub time: String,
    /// The agent's certificate's CN, else its subject.
    pub agent: &'a str,
    /// Where the agent connected from.
    pub agent_address: SocketAddr,
    /// The agent's certificate's serial number, hex.
    pub agent_serial: &'a str,
}

/// An agent's session with the edge ended; its endpoints are removed next.
#[derive(Debug, Clone, Serialize)]
pub struct AgentDisconnectedEvent<'a> {
    /// Always `agent_disconnected`.
    pub event: &'static str,
    /// When the edge noticed, RFC 3339 UTC.
    pub time: String,
    /// The agent's name.
    pub agent: &'a str,
    /// Where the agent had connected from.
    pub agent_address: SocketAddr,
    /// `closed`, `heartbeat_timeout` or `error` (see [`crate::AgentDisconnect`]).
    pub reason: &'static str,
    /// What happened, in words (not stable).
    pub detail: &'a str,
}

/// The edge serves a hostname for an agent.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointPublishedEvent<'a> {
    /// Always `endpoint_published`.
    pub event: &'static str,
    /// When the edge's gateway started serving it, RFC 3339 UTC.
    pub time: String,
    /// The public hostname.
    pub hostname: &'a str,
    /// The agent publishing it.
    pub agent: &'a str,
    /// `http` or `tls`.
    pub kind: &'a str,
    /// `edge` or `agent`.
    pub terminate_at: &'a str,
    /// Whether other agents may share the hostname.
    pub pool: bool,
}

/// The edge stopped serving a hostname for an agent.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointRemovedEvent<'a> {
    /// Always `endpoint_removed`.
    pub event: &'static str,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The public hostname.
    pub hostname: &'a str,
    /// The agent that published it.
    pub agent: &'a str,
    /// `withdrawn`, `agent_disconnected` or `refused_on_load` (see [`crate::EndpointRemoval`]).
    pub reason: &'static str,
}

/// A configuration reload ended (SIGHUP, `--watch`, or on an edge a change of what it serves):
/// the trust anchors, certificates and rules in force may have changed.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReloadedEvent {
    /// Always `config_reloaded`.
    pub event: &'static str,
    /// When the reload ended, RFC 3339 UTC.
    pub time: String,
    /// `success` (the new configuration serves new connections) or `failure` (it was refused;
    /// the running one stays).
    pub outcome: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasons::{AgentDisconnect, EndpointRemoval};

    /// The JSON lines `events` produce through an audit log.
    fn audited(events: &[Event<'_>]) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        for event in events {
            log.on_event(event);
        }
        log.close();
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `value` without its `time`, after checking that it is RFC 3339.
    fn timeless(mut value: serde_json::Value) -> serde_json::Value {
        let time = value["time"].as_str().unwrap().to_owned();
        OffsetDateTime::parse(&time, &Rfc3339).unwrap();
        value.as_object_mut().unwrap().remove("time");
        value
    }

    #[test]
    fn agent_sessions_are_audited_with_their_certificate_and_why_they_ended() {
        let address: SocketAddr = "192.0.2.7:50123".parse().unwrap();
        let lines = audited(&[
            Event::AgentConnected {
                agent: "laptop",
                address,
                serial: "0a1b",
            },
            Event::AgentDisconnected {
                agent: "laptop",
                address,
                reason: AgentDisconnect::HeartbeatTimeout,
                detail: "the peer answered no heartbeat within 15000 ms",
            },
        ]);
        let lines: Vec<_> = lines.into_iter().map(timeless).collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({
                    "event": "agent_connected",
                    "agent": "laptop",
                    "agent_address": "192.0.2.7:50123",
                    "agent_serial": "0a1b",
                }),
                serde_json::json!({
                    "event": "agent_disconnected",
                    "agent": "laptop",
                    "agent_address": "192.0.2.7:50123",
                    "reason": "heartbeat_timeout",
                    "detail": "the peer answered no heartbeat within 15000 ms",
                }),
            ]
        );
    }

    #[test]
    fn published_and_removed_endpoints_are_audited_with_the_agent_and_the_reason() {
        let lines = audited(&[
            Event::EndpointPublished {
                hostname: "app.tunnel.test",
                agent: "laptop",
                kind: "http",
                terminate_at: "edge",
                pool: false,
            },
            Event::EndpointRemoved {
                hostname: "app.tunnel.test",
                agent: "laptop",
                reason: EndpointRemoval::AgentDisconnected,
            },
            Event::EndpointRemoved {
                hostname: "db.tunnel.test",
                agent: "laptop",
                reason: EndpointRemoval::RefusedOnLoad,
            },
        ]);
        let lines: Vec<_> = lines.into_iter().map(timeless).collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({
                    "event": "endpoint_published",
                    "hostname": "app.tunnel.test",
                    "agent": "laptop",
                    "kind": "http",
                    "terminate_at": "edge",
                    "pool": false,
                }),
                serde_json::json!({
                    "event": "endpoint_removed",
                    "hostname": "app.tunnel.test",
                    "agent": "laptop",
                    "reason": "agent_disconnected",
                }),
                serde_json::json!({
                    "event": "endpoint_removed",
                    "hostname": "db.tunnel.test",
                    "agent": "laptop",
                    "reason": "refused_on_load",
                }),
            ]
        );
    }

    #[test]
    fn reloads_are_audited_with_their_outcome() {
        use crate::metrics::ReloadOutcome;
        let lines = audited(&[
            Event::ConfigReloaded(ReloadOutcome::Success),
            Event::ConfigReloaded(ReloadOutcome::Failure),
        ]);
        let lines: Vec<_> = lines.into_iter().map(timeless).collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"event": "config_reloaded", "outcome": "success"}),
                serde_json::json!({"event": "config_reloaded", "outcome": "failure"}),
            ]
        );
    }

    #[test]
    fn every_removal_and_disconnect_reason_has_its_stable_name() {
        assert_eq!(
            [
                AgentDisconnect::Closed,
                AgentDisconnect::HeartbeatTimeout,
                AgentDisconnect::Error
            ]
            .map(|reason| reason.as_str()),
            ["closed", "heartbeat_timeout", "error"]
        );
        assert_eq!(
            [
                EndpointRemoval::Withdrawn,
                EndpointRemoval::AgentDisconnected,
                EndpointRemoval::RefusedOnLoad
            ]
            .map(|reason| reason.as_str()),
            ["withdrawn", "agent_disconnected", "refused_on_load"]
        );
    }

    #[test]
    fn events_are_appended_one_json_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"event\":\"earlier\"}\n").unwrap();
        let log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        log.record(&serde_json::json!({"event": "one"}));
        log.record(&serde_json::json!({"event": "two"}));
        log.close();
        log.record(&serde_json::json!({"event": "after close"}));
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let names: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["earlier", "one", "two"]);
        assert_eq!(log.dropped().get(), 1);
    }

    #[test]
    fn an_unwritable_audit_log_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/audit.jsonl");
        let error = AuditLog::open(&AuditTarget::File(path)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("missing-dir/audit.jsonl"), "{message}");
        assert!(message.contains("choose another audit log"), "{message}");
    }
}
