//! The report's aggregates: what the audit events of a window say happened, counted once here
//! and shown as they are by every renderer (the JSON report is this type serialized).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ReportOptions;
use super::records::{AgentSession, Certificate, Handshake, Publication, Record, Request};

/// The version of the JSON report's shape; a field is only ever added under the same version.
pub const REPORT_FORMAT: &str = "moat-audit-report/1";

/// At most this many refused requests (by endpoint, status, rule, host and path) are listed;
/// the totals count them all.
pub const REFUSED_REQUESTS_LISTED: usize = 50;

/// At most this many reloads are listed, the latest; the totals count them all. An edge
/// reloads its gateway on every change of what its agents publish, thousands in a month.
pub const RELOADS_LISTED: usize = 100;

/// The activity chart has at most about this many bars.
const ACTIVITY_BARS: i64 = 48;

/// Connections whose client is remembered, to give their requests to the certificate of their
/// handshake; past this the memory is cleared (a request then goes to its subject's client).
/// About 150 bytes each.
const REMEMBERED_CONNECTIONS: usize = 1 << 20;

/// A point in time: RFC 3339 in the JSON report, `2026-11-23 15:49:17Z` for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    /// RFC 3339, e.g. `2026-11-23T15:49:17.449Z`; empty for a year RFC 3339 cannot write
    /// (none that an audit log holds).
    pub fn rfc3339(&self) -> String {
        self.0.format(&Rfc3339).unwrap_or_default()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self.0.to_offset(time::UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )
    }
}

/// Everything the report says; the JSON report is exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// [`REPORT_FORMAT`].
    pub format: &'static str,
    /// When the report was made.
    pub generated_at: Timestamp,
    /// The audit logs read, in order.
    pub sources: Vec<String>,
    /// What was asked for and what was found.
    pub window: Window,
    /// How the lines of the logs were used.
    pub lines: Lines,
    /// Counts over the whole window.
    pub totals: Totals,
    /// Counts per endpoint, by name.
    pub endpoints: Vec<EndpointTotals>,
    /// Refused handshakes by reason, most frequent first.
    pub refusals_by_reason: Vec<ReasonCount>,
    /// Who was refused (handshakes and requests), most refused first; `subject` is null for
    /// clients that sent no certificate.
    pub refusals_by_client: Vec<ClientRefusals>,
    /// Requests moat refused itself, grouped, most frequent first (at most
    /// [`REFUSED_REQUESTS_LISTED`]).
    pub refused_requests: Vec<RefusedRequests>,
    /// Every client certificate seen (by subject and issuer), by subject.
    pub clients: Vec<ClientSeen>,
    /// Client certificates seen that expire before the horizon, soonest first.
    pub expiring_certificates: Vec<ExpiringCertificate>,
    /// Configuration reloads.
    pub reloads: Reloads,
    /// Agent sessions and published endpoints (a `moat edge`'s log).
    pub edge: EdgeActivity,
    /// Handshakes and requests over time.
    pub activity: Activity,
}

/// The window asked for and the events found in it.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// `--since`: events at or after it; null: from the first.
    pub since: Option<Timestamp>,
    /// `--until`: events before it; null: to the last.
    pub until: Option<Timestamp>,
    /// `--endpoint`: only its handshakes, requests and publications (process-wide events,
    /// reloads and agent sessions, are kept); null: every endpoint.
    pub endpoint: Option<String>,
    /// The first event counted.
    pub first_event: Option<Timestamp>,
    /// The last event counted.
    pub last_event: Option<Timestamp>,
    /// Certificates expiring before this are listed: the window's end (`until`, else when the
    /// report was made) plus the expiry horizon.
    pub expiry_horizon: Timestamp,
}

/// How the lines of the logs were used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lines {
    /// Every line read, blank ones excepted.
    pub read: u64,
    /// Events counted in this report.
    pub counted: u64,
    /// Events outside the window or of another endpoint.
    pub filtered_out: u64,
    /// Events of a kind this version does not know (from a later moat).
    pub unknown_events: u64,
    /// Lines that are not audit events (moat's own messages on a shared stdout, a cut line).
    pub not_events: u64,
    /// The first few of those, to find them.
    pub skipped: Vec<SkippedLine>,
}

/// A line that is not an audit event.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedLine {
    /// The file.
    pub source: String,
    /// The line number, from 1.
    pub line: u64,
    /// Why it is not an event.
    pub why: String,
}

/// Counts over the whole window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Handshakes, accepted and refused.
    pub handshakes: u64,
    /// Accepted handshakes.
    pub handshakes_accepted: u64,
    /// Refused handshakes (and connections that closed or timed out before their handshake ended).
    pub handshakes_refused: u64,
    /// HTTP requests.
    pub requests: u64,
    /// HTTP requests by status class.
    pub requests_by_class: StatusClasses,
    /// Requests moat refused itself: a 4xx that never went upstream (403 by an access rule,
    /// 400 for a path or host it will not judge, 421, 408, 404 for an offline endpoint), not
    /// counting 499 (the client left).
    pub requests_refused: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Distinct client certificates by subject and issuer.
    pub clients: u64,
    /// Configuration reloads, successful or not.
    pub reloads: u64,
    /// Reloads that were refused (the running configuration stayed).
    pub reload_failures: u64,
}

/// Requests by status class.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatusClasses {
    /// 100-199.
    #[serde(rename = "1xx")]
    pub informational: u64,
    /// 200-299.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 300-399.
    #[serde(rename = "3xx")]
    pub redirection: u64,
    /// 400-499 (499: the client left before the response).
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 500-599.
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl StatusClasses {
    /// `("2xx", count)` for each class in order, for tables and charts.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("1xx", self.informational),
            ("2xx", self.success),
            ("3xx", self.redirection),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
        ]
    }

    fn count(&mut self, status: u16) {
        match status {
            100..=199 => self.informational += 1,
            200..=299 => self.success += 1,
            300..=399 => self.redirection += 1,
            400..=499 => self.client_error += 1,
            500..=599 => self.server_error += 1,
            _ => {}
        }
    }
}

/// Counts for one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointTotals {
    /// Its name; a handshake refused before the SNI chose an endpoint names all of the address's
    /// endpoints, joined by `,`.
    pub endpoint: String,
    /// Accepted handshakes.
    pub handshakes_accepted: u64,
    /// Refused handshakes.
    pub handshakes_refused: u64,
    /// Requests.
    pub requests: u64,
    /// Requests moat refused.
    pub requests_refused: u64,
}

/// A refusal reason and how often it was given.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    /// The stable reason (`unknown_ca`, `expired`, ...).
    pub reason: String,
    /// How often.
    pub count: u64,
}

/// One client's refusals.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRefusals {
    /// The certificate's subject; null when none was sent.
    pub subject: Option<String>,
    /// Refused handshakes.
    pub handshakes_refused: u64,
    /// Requests moat refused.
    pub requests_refused: u64,
    /// The handshakes' reasons, most frequent first.
    pub reasons: Vec<ReasonCount>,
}

/// Requests moat refused that share endpoint, status, rule, host and path.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedRequests {
    /// The endpoint.
    pub endpoint: String,
    /// The status sent.
    pub status: u16,
    /// The rule that refused; null when none did (e.g. a 400).
    pub rule: Option<String>,
    /// The host the client addressed, as sent.
    pub host: Option<String>,
    /// The path (canonical, or as sent when refused before that).
    pub path: String,
    /// How often.
    pub count: u64,
}

/// One client certificate identity (subject and issuer) and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSeen {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN; null when only requests named the subject and their handshake was not in
    /// the logs.
    pub issuer: Option<String>,
    /// Its first event in the window.
    pub first_seen: Timestamp,
    /// Its last event in the window.
    pub last_seen: Timestamp,
    /// Accepted handshakes.
    pub handshakes_accepted: u64,
    /// Refused handshakes.
    pub handshakes_refused: u64,
    /// Requests.
    pub requests: u64,
    /// Requests moat refused.
    pub requests_refused: u64,
    /// Distinct certificates (fingerprints) presented under this subject and issuer.
    pub certificates: u64,
}

/// When a listed certificate expires relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStatus {
    /// Already expired when the window began.
    ExpiredBeforeWindow,
    /// Expired during the window.
    ExpiresInWindow,
    /// Expires after the window, before the horizon.
    ExpiresAfterWindow,
}

impl ExpiryStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryStatus::ExpiredBeforeWindow => "expired_before_window",
            ExpiryStatus::ExpiresInWindow => "expires_in_window",
            ExpiryStatus::ExpiresAfterWindow => "expires_after_window",
        }
    }
}

/// A client certificate seen in the window that expires before the horizon.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringCertificate {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint_sha256: String,
    /// notAfter.
    pub not_after: Timestamp,
    /// Whole days from the window's end to notAfter (negative: already expired then).
    pub days_left: i64,
    /// Before, in or after the window.
    pub status: ExpiryStatus,
    /// Its last handshake in the window.
    pub last_seen: Timestamp,
    /// That handshake's outcome.
    pub last_outcome: String,
}

/// Configuration reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reloads {
    /// Reloads that took effect.
    pub success: u64,
    /// Reloads that were refused.
    pub failure: u64,
    /// The latest [`RELOADS_LISTED`], oldest first.
    pub latest: Vec<ReloadSeen>,
}

/// One reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadSeen {
    /// When it ended.
    pub time: Timestamp,
    /// `success` or `failure`.
    pub outcome: String,
}

/// What an edge's log says of its agents and their endpoints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EdgeActivity {
    /// Agent sessions opened.
    pub agent_connects: u64,
    /// Agent sessions ended.
    pub agent_disconnects: u64,
    /// Why sessions ended, most frequent first.
    pub disconnects_by_reason: Vec<ReasonCount>,
    /// Each agent, by name.
    pub agents: Vec<AgentSeen>,
    /// Endpoints published (one per agent of a pool).
    pub endpoints_published: u64,
    /// Endpoints removed.
    pub endpoints_removed: u64,
    /// Why endpoints were removed, most frequent first.
    pub removals_by_reason: Vec<ReasonCount>,
}

/// One agent's sessions.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSeen {
    /// Its name.
    pub agent: String,
    /// Sessions opened.
    pub connects: u64,
    /// Sessions ended.
    pub disconnects: u64,
    /// Its first event in the window.
    pub first_seen: Timestamp,
    /// Its last event in the window.
    pub last_seen: Timestamp,
    /// The address of its last session.
    pub last_address: String,
    /// Why its last session ended; null when none ended.
    pub last_disconnect_reason: Option<String>,
}

/// Handshakes and requests in equal slices of the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Activity {
    /// The length of a slice, seconds.
    pub bucket_seconds: i64,
    /// The slices in order, empty ones included.
    pub buckets: Vec<ActivityBucket>,
}

/// One slice of [`Activity`].
#[derive(Debug, Clone, Serialize)]
pub struct ActivityBucket {
    /// Where it starts.
    pub start: Timestamp,
    /// Accepted handshakes.
    pub handshakes_accepted: u64,
    /// Refused handshakes.
    pub handshakes_refused: u64,
    /// Requests.
    pub requests: u64,
}

/// A client certificate identity: subject and issuer (unknown for a request whose handshake
/// is not in the logs).
type ClientKey = (String, Option<String>);

#[derive(Debug)]
struct ClientTally {
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    handshakes_accepted: u64,
    handshakes_refused: u64,
    requests: u64,
    requests_refused: u64,
    fingerprints: BTreeSet<String>,
}

impl ClientTally {
    fn new(time: OffsetDateTime) -> ClientTally {
        ClientTally {
            first_seen: time,
            last_seen: time,
            handshakes_accepted: 0,
            handshakes_refused: 0,
            requests: 0,
            requests_refused: 0,
            fingerprints: BTreeSet::new(),
        }
    }

    fn seen(&mut self, time: OffsetDateTime) {
        self.first_seen = self.first_seen.min(time);
        self.last_seen = self.last_seen.max(time);
    }
}

#[derive(Debug)]
struct CertificateTally {
    facts: Certificate,
    not_after: OffsetDateTime,
    last_seen: OffsetDateTime,
    last_outcome: String,
}

#[derive(Debug, Default)]
struct RefusalTally {
    handshakes: u64,
    requests: u64,
    reasons: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct AgentTally {
    connects: u64,
    disconnects: u64,
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    last_address: String,
    last_reason: Option<String>,
}

/// `(endpoint, status, rule, host, path)` of a refused request.
type RefusedKey = (String, u16, Option<String>, Option<String>, String);

/// The counts while the logs are read; [`Tally::finish`] makes the [`Summary`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    lines: Lines,
    first_event: Option<OffsetDateTime>,
    last_event: Option<OffsetDateTime>,
    totals: Totals,
    endpoints: BTreeMap<String, EndpointTotals>,
    refusals_by_reason: BTreeMap<String, u64>,
    refusals_by_client: BTreeMap<Option<String>, RefusalTally>,
    refused_requests: HashMap<RefusedKey, u64>,
    clients: BTreeMap<ClientKey, ClientTally>,
    /// The issuers each subject was accepted with, to give a request without a known
    /// handshake to its client when the subject names only one.
    issuers: HashMap<String, BTreeSet<String>>,
    /// `(endpoint, peer)` → the client certificate of the connection's accepted handshake.
    connections: HashMap<(String, String), ClientKey>,
    certificates: BTreeMap<String, CertificateTally>,
    reloads: Reloads,
    reload_times: Vec<ReloadSeen>,
    edge: EdgeActivity,
    disconnects_by_reason: BTreeMap<String, u64>,
    removals_by_reason: BTreeMap<String, u64>,
    agents: BTreeMap<String, AgentTally>,
    /// Per minute since the epoch: accepted handshakes, refused handshakes, requests.
    minutes: BTreeMap<i64, [u64; 3]>,
}

impl Tally {
    /// Counts a line that is not an audit event, keeping the first few for the report.
    pub(crate) fn not_an_event(&mut self, source: &str, line: u64, why: String) {
        /// Enough to find the problem, few enough to read.
        const SKIPPED_LISTED: usize = 10;
        self.lines.not_events += 1;
        if self.lines.skipped.len() < SKIPPED_LISTED {
            self.lines.skipped.push(SkippedLine {
                source: source.to_owned(),
                line,
                why,
            });
        }
    }

    /// Counts a line read (blank lines are not).
    pub(crate) fn line_read(&mut self) {
        self.lines.read += 1;
    }

    /// Counts an event of an unknown kind.
    pub(crate) fn unknown_event(&mut self) {
        self.lines.unknown_events += 1;
    }

    /// Takes note of an event outside the report (another endpoint, outside the window): only
    /// which client a connection belongs to is kept, for its requests inside the window.
    pub(crate) fn filtered_out(&mut self, record: &Record) {
        self.lines.filtered_out += 1;
        if let Record::TlsHandshake(handshake) = record {
            self.remember_connection(handshake);
        }
    }

    /// Counts one event of the report.
    pub(crate) fn count(&mut self, record: Record, time: OffsetDateTime) {
        self.lines.counted += 1;
        self.first_event = Some(self.first_event.map_or(time, |first| first.min(time)));
        self.last_event = Some(self.last_event.map_or(time, |last| last.max(time)));
        match record {
            Record::TlsHandshake(handshake) => self.handshake(handshake, time),
            Record::HttpRequest(request) => self.request(request, time),
            Record::ConfigReloaded(reload) => {
                self.totals.reloads += 1;
                if reload.outcome == "success" {
                    self.reloads.success += 1;
                } else {
                    self.reloads.failure += 1;
                    self.totals.reload_failures += 1;
                }
                self.reload_times.push(ReloadSeen {
                    time: Timestamp(time),
                    outcome: reload.outcome,
                });
            }
            Record::AgentConnected(session) => self.agent(session, time, true),
            Record::AgentDisconnected(session) => self.agent(session, time, false),
            Record::EndpointPublished(_) => self.edge.endpoints_published += 1,
            Record::EndpointRemoved(Publication { reason, .. }) => {
                self.edge.endpoints_removed += 1;
                let reason = reason.unwrap_or_else(|| "unknown".to_owned());
                *self.removals_by_reason.entry(reason).or_default() += 1;
            }
            Record::Unknown => {}
        }
    }

    /// Remembers the client certificate of an accepted handshake's connection, and the issuer
    /// of its subject, for the requests that follow (also from outside the window).
    fn remember_connection(&mut self, handshake: &Handshake) {
        if handshake.outcome != "accepted" {
            return;
        }
        let Some(certificate) = &handshake.client_certificate else {
            return;
        };
        self.issuers
            .entry(certificate.subject.clone())
            .or_default()
            .insert(certificate.issuer.clone());
        if self.connections.len() >= REMEMBERED_CONNECTIONS {
            self.connections.clear();
        }
        self.connections.insert(
            (handshake.endpoint.clone(), handshake.peer.clone()),
            (
                certificate.subject.clone(),
                Some(certificate.issuer.clone()),
            ),
        );
    }

    fn handshake(&mut self, handshake: Handshake, time: OffsetDateTime) {
        self.remember_connection(&handshake);
        let accepted = handshake.outcome == "accepted";
        let endpoint = self.endpoint(&handshake.endpoint);
        let column = if accepted {
            endpoint.handshakes_accepted += 1;
            self.totals.handshakes_accepted += 1;
            0
        } else {
            endpoint.handshakes_refused += 1;
            self.totals.handshakes_refused += 1;
            1
        };
        self.totals.handshakes += 1;
        self.minute(time)[column] += 1;
        if !accepted {
            let reason = handshake.reason.unwrap_or_else(|| "unknown".to_owned());
            *self.refusals_by_reason.entry(reason.clone()).or_default() += 1;
            let subject = handshake
                .client_certificate
                .as_ref()
                .map(|certificate| certificate.subject.clone());
            let refusals = self.refusals_by_client.entry(subject).or_default();
            refusals.handshakes += 1;
            *refusals.reasons.entry(reason).or_default() += 1;
        }
        let Some(certificate) = handshake.client_certificate else {
            return;
        };
        let client = self
            .clients
            .entry((
                certificate.subject.clone(),
                Some(certificate.issuer.clone()),
            ))
            .or_insert_with(|| ClientTally::new(time));
        client.seen(time);
        if accepted {
            client.handshakes_accepted += 1;
        } else {
            client.handshakes_refused += 1;
        }
        client
            .fingerprints
            .insert(certificate.fingerprint_sha256.clone());
        // A certificate whose notAfter moat could not write cannot be said to expire.
        let Ok(not_after) = OffsetDateTime::parse(&certificate.not_after, &Rfc3339) else {
            return;
        };
        let outcome = handshake.outcome;
        match self.certificates.get_mut(&certificate.fingerprint_sha256) {
            Some(seen) if seen.last_seen > time => {}
            Some(seen) => {
                seen.last_seen = time;
                seen.last_outcome = outcome;
            }
            None => {
                self.certificates.insert(
                    certificate.fingerprint_sha256.clone(),
                    CertificateTally {
                        facts: certificate,
                        not_after,
                        last_seen: time,
                        last_outcome: outcome,
                    },
                );
            }
        }
    }

    fn request(&mut self, request: Request, time: OffsetDateTime) {
        // A 4xx that never went upstream is moat's own answer; 499 only says the client left.
        let refused = (400..500).contains(&request.status)
            && request.status != 499
            && request.upstream_ms.is_none();
        self.totals.requests += 1;
        self.totals.requests_by_class.count(request.status);
        self.totals.bytes_in += request.bytes_in;
        self.totals.bytes_out += request.bytes_out;
        self.minute(time)[2] += 1;
        let endpoint = self.endpoint(&request.endpoint);
        endpoint.requests += 1;
        if refused {
            endpoint.requests_refused += 1;
            self.totals.requests_refused += 1;
            self.refusals_by_client
                .entry(request.client_subject.clone())
                .or_default()
                .requests += 1;
        }
        if let Some(subject) = &request.client_subject {
            let key = self.client_of(&request.endpoint, &request.peer, subject);
            let client = self
                .clients
                .entry(key)
                .or_insert_with(|| ClientTally::new(time));
            client.seen(time);
            client.requests += 1;
            if refused {
                client.requests_refused += 1;
            }
        }
        if refused {
            let key = (
                request.endpoint,
                request.status,
                request.rule,
                request.host,
                request.path,
            );
            *self.refused_requests.entry(key).or_default() += 1;
        }
    }

    /// The client a request belongs to: its connection's certificate when that handshake was
    /// read, else the only issuer seen with the subject, else the subject alone.
    fn client_of(&self, endpoint: &str, peer: &str, subject: &str) -> ClientKey {
        let connection = (endpoint.to_owned(), peer.to_owned());
        if let Some(key) = self.connections.get(&connection)
            && key.0 == subject
        {
            return key.clone();
        }
        match self.issuers.get(subject) {
            Some(issuers) if issuers.len() == 1 => {
                (subject.to_owned(), issuers.iter().next().cloned())
            }
            _ => (subject.to_owned(), None),
        }
    }

    fn agent(&mut self, session: AgentSession, time: OffsetDateTime, connected: bool) {
        let agent = self
            .agents
            .entry(session.agent)
            .or_insert_with(|| AgentTally {
                connects: 0,
                disconnects: 0,
                first_seen: time,
                last_seen: time,
                last_address: String::new(),
                last_reason: None,
            });
        agent.first_seen = agent.first_seen.min(time);
        agent.last_seen = agent.last_seen.max(time);
        agent.last_address = session.agent_address;
        if connected {
            agent.connects += 1;
            self.edge.agent_connects += 1;
        } else {
            agent.disconnects += 1;
            self.edge.agent_disconnects += 1;
            let reason = session.reason.unwrap_or_else(|| "unknown".to_owned());
            agent.last_reason = Some(reason.clone());
            *self.disconnects_by_reason.entry(reason).or_default() += 1;
        }
    }

    fn endpoint(&mut self, name: &str) -> &mut EndpointTotals {
        self.endpoints
            .entry(name.to_owned())
            .or_insert_with(|| EndpointTotals {
                endpoint: name.to_owned(),
                ..EndpointTotals::default()
            })
    }

    fn minute(&mut self, time: OffsetDateTime) -> &mut [u64; 3] {
        self.minutes
            .entry(time.unix_timestamp().div_euclid(60))
            .or_default()
    }

    /// The summary of everything counted, for `options` and the logs named `sources`.
    pub(crate) fn finish(self, options: &ReportOptions, sources: Vec<String>) -> Summary {
        let window_end = options.until.unwrap_or(options.now);
        let window_start = options.since.or(self.first_event).unwrap_or(window_end);
        let horizon = window_end.saturating_add(options.expiring_within);
        let mut totals = self.totals;
        totals.clients = self.clients.len() as u64;

        let mut expiring: Vec<ExpiringCertificate> = self
            .certificates
            .into_values()
            .filter(|certificate| certificate.not_after < horizon)
            .map(|certificate| {
                let status = if certificate.not_after < window_start {
                    ExpiryStatus::ExpiredBeforeWindow
                } else if certificate.not_after < window_end {
                    ExpiryStatus::ExpiresInWindow
                } else {
                    ExpiryStatus::ExpiresAfterWindow
                };
                ExpiringCertificate {
                    subject: certificate.facts.subject,
                    issuer: certificate.facts.issuer,
                    serial: certificate.facts.serial,
                    fingerprint_sha256: certificate.facts.fingerprint_sha256,
                    not_after: Timestamp(certificate.not_after),
                    days_left: (certificate.not_after - window_end).whole_days(),
                    status,
                    last_seen: Timestamp(certificate.last_seen),
                    last_outcome: certificate.last_outcome,
                }
            })
            .collect();
        expiring.sort_by(|a, b| {
            (a.not_after, &a.fingerprint_sha256).cmp(&(b.not_after, &b.fingerprint_sha256))
        });

        let mut refusals_by_client: Vec<ClientRefusals> = self
            .refusals_by_client
            .into_iter()
            .map(|(subject, tally)| ClientRefusals {
                subject,
                handshakes_refused: tally.handshakes,
                requests_refused: tally.requests,
                reasons: most_frequent(tally.reasons),
            })
            .collect();
        refusals_by_client.sort_by(|a, b| {
            let total = |c: &ClientRefusals| c.handshakes_refused + c.requests_refused;
            total(b)
                .cmp(&total(a))
                .then_with(|| a.subject.cmp(&b.subject))
        });

        let mut refused_requests: Vec<RefusedRequests> = self
            .refused_requests
            .into_iter()
            .map(
                |((endpoint, status, rule, host, path), count)| RefusedRequests {
                    endpoint,
                    status,
                    rule,
                    host,
                    path,
                    count,
                },
            )
            .collect();
        refused_requests.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.endpoint, a.status, &a.rule, &a.host, &a.path).cmp(&(
                    &b.endpoint,
                    b.status,
                    &b.rule,
                    &b.host,
                    &b.path,
                ))
            })
        });
        refused_requests.truncate(REFUSED_REQUESTS_LISTED);

        let clients = self
            .clients
            .into_iter()
            .map(|((subject, issuer), tally)| ClientSeen {
                subject,
                issuer,
                first_seen: Timestamp(tally.first_seen),
                last_seen: Timestamp(tally.last_seen),
                handshakes_accepted: tally.handshakes_accepted,
                handshakes_refused: tally.handshakes_refused,
                requests: tally.requests,
                requests_refused: tally.requests_refused,
                certificates: tally.fingerprints.len() as u64,
            })
            .collect();

        let mut reloads = self.reloads;
        let mut reload_times = self.reload_times;
        reload_times.sort_by_key(|reload| reload.time);
        let listed_from = reload_times.len().saturating_sub(RELOADS_LISTED);
        reloads.latest = reload_times.split_off(listed_from);

        let mut edge = self.edge;
        edge.disconnects_by_reason = most_frequent(self.disconnects_by_reason);
        edge.removals_by_reason = most_frequent(self.removals_by_reason);
        edge.agents = self
            .agents
            .into_iter()
            .map(|(agent, tally)| AgentSeen {
                agent,
                connects: tally.connects,
                disconnects: tally.disconnects,
                first_seen: Timestamp(tally.first_seen),
                last_seen: Timestamp(tally.last_seen),
                last_address: tally.last_address,
                last_disconnect_reason: tally.last_reason,
            })
            .collect();

        let activity_end = options.until.or(self.last_event).unwrap_or(window_end);
        let activity = activity(&self.minutes, window_start, activity_end);

        Summary {
            format: REPORT_FORMAT,
            generated_at: Timestamp(options.now),
            sources,
            window: Window {
                since: options.since.map(Timestamp),
                until: options.until.map(Timestamp),
                endpoint: options.endpoint.clone(),
                first_event: self.first_event.map(Timestamp),
                last_event: self.last_event.map(Timestamp),
                expiry_horizon: Timestamp(horizon),
            },
            lines: self.lines,
            totals,
            endpoints: self.endpoints.into_values().collect(),
            refusals_by_reason: most_frequent(self.refusals_by_reason),
            refusals_by_client,
            refused_requests,
            clients,
            expiring_certificates: expiring,
            reloads,
            edge,
            activity,
        }
    }
}

/// `counts` as a list, most frequent first (ties by name).
fn most_frequent(counts: BTreeMap<String, u64>) -> Vec<ReasonCount> {
    let mut list: Vec<ReasonCount> = counts
        .into_iter()
        .map(|(reason, count)| ReasonCount { reason, count })
        .collect();
    // Stable: equal counts keep the map's alphabetical order.
    list.sort_by_key(|reason| std::cmp::Reverse(reason.count));
    list
}

/// The per-minute counts between `start` and `end` in at most about [`ACTIVITY_BARS`] equal
/// slices: 1, 5, 15 or 30 minutes, 1, 3, 6 or 12 hours, 1 or 7 days, or more whole days.
fn activity(
    minutes: &BTreeMap<i64, [u64; 3]>,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> Activity {
    if minutes.is_empty() || end < start {
        return Activity::default();
    }
    const STEPS: [i64; 10] = [
        60,
        5 * 60,
        15 * 60,
        30 * 60,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86_400,
        7 * 86_400,
    ];
    let (first, last) = (start.unix_timestamp(), end.unix_timestamp());
    let span = (last - first).max(1);
    let step = STEPS
        .into_iter()
        .find(|step| span / step < ACTIVITY_BARS)
        .unwrap_or_else(|| (span / ACTIVITY_BARS / 86_400 + 1) * 86_400);
    let first_bucket = first.div_euclid(step) * step;
    let count = (last.div_euclid(step) * step - first_bucket) / step + 1;
    let mut buckets: Vec<ActivityBucket> = (0..count)
        .map(|index| ActivityBucket {
            start: Timestamp(
                OffsetDateTime::from_unix_timestamp(first_bucket + index * step)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            ),
            handshakes_accepted: 0,
            handshakes_refused: 0,
            requests: 0,
        })
        .collect();
    for (minute, [accepted, refused, requests]) in minutes {
        let index = (minute * 60 - first_bucket).div_euclid(step);
        let Some(bucket) = usize::try_from(index)
            .ok()
            .and_then(|index| buckets.get_mut(index))
        else {
            continue;
        };
        bucket.handshakes_accepted += accepted;
        bucket.handshakes_refused += refused;
        bucket.requests += requests;
    }
    Activity {
        bucket_seconds: step,
        buckets,
    }
}
