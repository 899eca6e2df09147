//! `moat audit report`: audit logs read back event by event and summed up over a window for a
//! periodic review — totals, refusals by reason and by client, the clients seen, certificates
//! near expiry, reloads, an edge's agents — as JSON, Markdown or one self-contained HTML page.
//!
//! ```text
//! audit.jsonl ──> Report::read_file ──> Tally (summary.rs) ──> Summary ──> json.rs     (serde)
//!   (line by line; lines that are not             │                   ──> markdown.rs
//!    events are counted and skipped)              │                   ──> html.rs     (SVG charts)
//! ```
//!
//! Reading is pure over its input: the caller gives the window and "now", so a report of the
//! same logs and options is the same report.

mod html;
mod json;
mod markdown;
mod records;
mod summary;
mod tables;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use records::Record;
use summary::Tally;
pub use summary::{
    Activity, ActivityBucket, AgentSeen, ClientRefusals, ClientSeen, EdgeActivity, EndpointTotals,
    ExpiringCertificate, ExpiryStatus, Lines, REFUSED_REQUESTS_LISTED, RELOADS_LISTED,
    REPORT_FORMAT, ReasonCount, RefusedRequests, ReloadSeen, Reloads, SkippedLine, StatusClasses,
    Summary, Timestamp, Totals, Window,
};

/// How far after the window's end a client certificate's expiry is still reported, unless
/// the caller says otherwise: a month, time enough to renew.
pub const DEFAULT_EXPIRING_WITHIN: time::Duration = time::Duration::days(30);

/// A line longer than this is not an audit event (those are under 2 KiB) and is skipped
/// without being held in memory whole, e.g. when a binary file is given by mistake.
const LONGEST_LINE: usize = 1 << 20;

/// What the report covers.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Count events at or after this time; `None`: from the first.
    pub since: Option<OffsetDateTime>,
    /// Count events before this time; `None`: to the last.
    pub until: Option<OffsetDateTime>,
    /// Count only this endpoint's handshakes and requests (and an edge's publications of this
    /// hostname); process-wide events (reloads, agent sessions) are always counted.
    pub endpoint: Option<String>,
    /// Client certificates expiring up to this long after the window's end are listed.
    pub expiring_within: time::Duration,
    /// When the report is made: the window's end when `until` is not given.
    pub now: OffsetDateTime,
}

impl ReportOptions {
    /// Every event, certificates expiring within [`DEFAULT_EXPIRING_WITHIN`] of `now`.
    pub fn new(now: OffsetDateTime) -> ReportOptions {
        ReportOptions {
            since: None,
            until: None,
            endpoint: None,
            expiring_within: DEFAULT_EXPIRING_WITHIN,
            now,
        }
    }

    fn covers_time(&self, time: OffsetDateTime) -> bool {
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time < until)
    }

    /// Whether an event of `endpoint` is counted. A handshake refused before the SNI chose an
    /// endpoint names every endpoint of the address (`a,b`); it counts for each of them.
    fn covers_endpoint(&self, endpoint: Option<&str>) -> bool {
        match (&self.endpoint, endpoint) {
            (Some(wanted), Some(names)) => names.split(',').any(|name| name == wanted),
            _ => true,
        }
    }
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One self-contained page: inline CSS and SVG charts, no script, nothing loaded.
    Html,
    /// Markdown tables, for a ticket or a wiki.
    Markdown,
    /// The [`Summary`] as JSON, field names stable under [`REPORT_FORMAT`].
    Json,
}

impl Format {
    /// The report in this format.
    pub fn render(self, summary: &Summary) -> String {
        match self {
            Format::Html => html::render(summary),
            Format::Markdown => markdown::render(summary),
            Format::Json => json::render(summary),
        }
    }
}

/// Why an audit log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The file could not be opened.
    #[error("{path}: cannot open the audit log: {source}; check the file's path and that it may be read", path = path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading failed part way.
    #[error(
        "{name}: line {line}: cannot read the audit log: {source}; check the disk, or copy the file elsewhere and report on the copy"
    )]
    Read {
        /// The file, or what else was read.
        name: String,
        /// The line being read, from 1.
        line: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A report being made: feed it audit logs in order, then [`Report::finish`].
#[derive(Debug)]
pub struct Report {
    options: ReportOptions,
    tally: Tally,
    sources: Vec<String>,
}

impl Report {
    /// An empty report over `options`' window.
    pub fn new(options: ReportOptions) -> Report {
        Report {
            options,
            tally: Tally::default(),
            sources: Vec::new(),
        }
    }

    /// Reads one audit log, event by event.
    pub fn read_file(&mut self, path: &Path) -> Result<(), ReportError> {
        let file = File::open(path).map_err(|source| ReportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        self.read(BufReader::new(file), &path.display().to_string())
    }

    /// Reads audit events from `reader`, one JSON object per line; `source` names it in the
    /// report. A line that is not an event is counted and skipped; an I/O error stops the
    /// reading with the number of the line it was in.
    pub fn read(&mut self, mut reader: impl BufRead, source: &str) -> Result<(), ReportError> {
        self.sources.push(source.to_owned());
        let mut buffer = Vec::new();
        let mut number = 0;
        loop {
            number += 1;
            let line = match next_line(&mut reader, &mut buffer) {
                Ok(None) => return Ok(()),
                Ok(Some(line)) => line,
                Err(error) => {
                    return Err(ReportError::Read {
                        name: source.to_owned(),
                        line: number,
                        source: error,
                    });
                }
            };
            match line {
                Line::TooLong => {
                    self.tally.line_read();
                    self.tally.not_an_event(
                        source,
                        number,
                        format!("longer than {LONGEST_LINE} bytes"),
                    );
                }
                Line::Text => self.line(source, number, &buffer),
            }
        }
    }

    fn line(&mut self, source: &str, number: u64, bytes: &[u8]) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.tally.line_read();
            self.tally
                .not_an_event(source, number, "not UTF-8 text".to_owned());
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.tally.line_read();
        let record: Record = match serde_json::from_str(text) {
            Ok(record) => record,
            Err(error) => {
                let why = match error.classify() {
                    serde_json::error::Category::Data => format!("not an audit event: {error}"),
                    _ => format!("not JSON: {error}"),
                };
                self.tally.not_an_event(source, number, why);
                return;
            }
        };
        let Some(time) = record.time() else {
            self.tally.unknown_event();
            return;
        };
        let Ok(time) = OffsetDateTime::parse(time, &Rfc3339) else {
            let why = format!("its time {time:?} is not an RFC 3339 time");
            self.tally.not_an_event(source, number, why);
            return;
        };
        if self.options.covers_time(time) && self.options.covers_endpoint(record.endpoint()) {
            self.tally.count(record, time);
        } else {
            self.tally.filtered_out(&record);
        }
    }

    /// The summary of everything read.
    pub fn finish(self) -> Summary {
        self.tally.finish(&self.options, self.sources)
    }
}

/// What [`next_line`] found.
enum Line {
    /// A line, in the buffer without its line ending.
    Text,
    /// A line longer than [`LONGEST_LINE`], read past and dropped.
    TooLong,
}

/// Reads the next line into `buffer` (without `\n`); `None` at the end of the input.
fn next_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    buffer.clear();
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            let at_end = buffer.is_empty() && !too_long;
            return Ok((!at_end).then_some(if too_long { Line::TooLong } else { Line::Text }));
        }
        let (chunk, found_end) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if !too_long {
            if buffer.len() + chunk.len() > LONGEST_LINE {
                too_long = true;
                buffer.clear();
            } else {
                buffer.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(found_end);
        reader.consume(used);
        if found_end {
            return Ok(Some(if too_long { Line::TooLong } else { Line::Text }));
        }
    }
}

/// Reads `paths` in order and sums them up over `options`' window.
pub fn summarize(paths: &[PathBuf], options: ReportOptions) -> Result<Summary, ReportError> {
    let mut report = Report::new(options);
    for path in paths {
        report.read_file(path)?;
    }
    Ok(report.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `tls_handshake` line at `second` past 12:00 on 2026-11-30.
    fn handshake(second: u32, endpoint: &str, peer: &str, subject: &str, outcome: &str) -> String {
        let (certificate, reason) = match (subject, outcome) {
            ("", "accepted") => ("null".to_owned(), "null"),
            ("", _) => ("null".to_owned(), "\"no_certificate\""),
            (subject, outcome) => (
                serde_json::json!({
                    "subject": subject, "issuer": "CN=Team CA", "serial": "0a",
                    "fingerprint_sha256": format!("{subject}-fp"),
                    "not_after": "2026-12-10T00:00:00Z",
                })
                .to_string(),
                if outcome == "accepted" {
                    "null"
                } else {
                    "\"unknown_ca\""
                },
            ),
        };
        format!(
            r#"{{"event":"tls_handshake","time":"2026-11-30T12:00:{second:02}Z","endpoint":"{endpoint}","peer":"{peer}","sni":"localhost","tls_version":null,"cipher_suite":null,"alpn":null,"client_certificate":{certificate},"outcome":"{outcome}","reason":{reason}}}"#
        )
    }

    fn request(second: u32, endpoint: &str, peer: &str, subject: &str, status: u16) -> String {
        let upstream = if status == 200 { "1.5" } else { "null" };
        format!(
            r#"{{"event":"http_request","time":"2026-11-30T12:00:{second:02}Z","endpoint":"{endpoint}","peer":"{peer}","method":"GET","host":"localhost","path":"/","status":{status},"rule":null,"client_subject":"{subject}","upstream_ms":{upstream},"duration_ms":2.0,"bytes_in":0,"bytes_out":5}}"#
        )
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn summary(lines: &[String], options: ReportOptions) -> Summary {
        let mut report = Report::new(options);
        report
            .read(lines.join("\n").as_bytes(), "audit.jsonl")
            .unwrap();
        report.finish()
    }

    #[test]
    fn requests_count_for_the_certificate_of_their_connection_even_before_the_window() {
        let lines = [
            handshake(1, "app", "127.0.0.1:1000", "CN=alice", "accepted"),
            request(2, "app", "127.0.0.1:1000", "CN=alice", 200),
            request(10, "app", "127.0.0.1:1000", "CN=alice", 403),
            handshake(11, "app,api", "127.0.0.1:1001", "CN=mallory", "refused"),
            handshake(12, "api", "127.0.0.1:1002", "", "refused"),
        ];
        let mut options = ReportOptions::new(at("2026-11-30T13:00:00Z"));
        options.since = Some(at("2026-11-30T12:00:10Z"));
        options.endpoint = Some("app".to_owned());
        let summary = summary(&lines, options);
        assert_eq!(summary.lines.counted, 2, "{:?}", summary.lines);
        assert_eq!(summary.lines.filtered_out, 3);
        assert_eq!(summary.totals.requests, 1);
        assert_eq!(summary.totals.requests_refused, 1);
        assert_eq!(summary.totals.handshakes_refused, 1);
        let alice = &summary.clients[0];
        assert_eq!(
            (alice.subject.as_str(), alice.issuer.as_deref()),
            ("CN=alice", Some("CN=Team CA"))
        );
        assert_eq!((alice.requests, alice.requests_refused), (1, 1));
        assert_eq!(summary.refusals_by_reason[0].reason, "unknown_ca");
        // mallory was refused in the window, alice only seen before it: mallory's certificate
        // is the one listed as expiring (within 30 days of the window's end).
        let expiring: Vec<&str> = summary
            .expiring_certificates
            .iter()
            .map(|certificate| certificate.subject.as_str())
            .collect();
        assert_eq!(expiring, ["CN=mallory"]);
    }

    #[test]
    fn lines_that_are_not_events_are_counted_and_named() {
        let lines = [
            "moat: endpoint app listening on https://127.0.0.1:8443".to_owned(),
            String::new(),
            r#"{"event":"tls_handshake","time":"2026-11-30T12:00:00Z"}"#.to_owned(),
            r#"{"event":"from_the_future","time":"2026-11-30T12:00:00Z"}"#.to_owned(),
            r#"{"event":"config_reloaded","time":"yesterday","outcome":"success"}"#.to_owned(),
            r#"{"event":"config_reloaded","time":"2026-11-30T12:00:00Z","outcome":"failure"}"#
                .to_owned(),
            "x".repeat(LONGEST_LINE + 10),
        ];
        let summary = summary(&lines, ReportOptions::new(at("2026-11-30T13:00:00Z")));
        let lines = &summary.lines;
        assert_eq!(
            (
                lines.read,
                lines.counted,
                lines.unknown_events,
                lines.not_events
            ),
            (6, 1, 1, 4)
        );
        let skipped: Vec<(u64, &str)> = lines
            .skipped
            .iter()
            .map(|line| (line.line, line.why.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            skipped,
            [
                (1, "not JSON"),
                (3, "not an audit event"),
                (5, "its time \"yesterday\" is not an RFC 3339 time"),
                (7, "longer than 1048576 bytes"),
            ]
        );
        assert_eq!((summary.reloads.success, summary.reloads.failure), (0, 1));
    }

    #[test]
    fn what_the_audit_log_writes_the_report_reads() {
        use crate::audit::{ConfigReloadedEvent, HttpRequestEvent};
        let request = HttpRequestEvent {
            event: "http_request",
            time: "2026-11-30T12:00:00Z".to_owned(),
            endpoint: "app".to_owned(),
            peer: "127.0.0.1:1".parse().unwrap(),
            method: "GET".to_owned(),
            host: None,
            path: "/".to_owned(),
            status: 200,
            rule: None,
            client_subject: None,
            upstream_ms: Some(1.0),
            duration_ms: 1.0,
            bytes_in: 1,
            bytes_out: 2,
        };
        let reload = ConfigReloadedEvent {
            event: "config_reloaded",
            time: "2026-11-30T12:00:01Z".to_owned(),
            outcome: "success",
        };
        let lines = [
            serde_json::to_string(&request).unwrap(),
            serde_json::to_string(&reload).unwrap(),
        ];
        let summary = summary(&lines, ReportOptions::new(at("2026-11-30T13:00:00Z")));
        assert_eq!(summary.lines.counted, 2, "{:?}", summary.lines);
        assert_eq!(summary.totals.bytes_out, 2);
        assert_eq!(summary.reloads.success, 1);
    }
}
