//! The report's content as sections of tables, built once from the [`Summary`] for the two
//! renderers that show tables (Markdown and HTML), which differ only in markup.

use super::summary::{ReasonCount, Summary, Timestamp};

/// One headline number.
pub(super) struct Total {
    /// The field of [`super::Totals`] it shows (the JSON name; `data-total` in the HTML).
    pub(super) field: &'static str,
    /// What it counts.
    pub(super) label: &'static str,
    pub(super) value: u64,
}

/// A part of the report with a heading.
pub(super) struct Section {
    /// Its anchor (`id` in the HTML).
    pub(super) id: &'static str,
    pub(super) title: &'static str,
    /// Sentences before the tables (plain text: each renderer escapes it).
    pub(super) intro: Vec<String>,
    pub(super) tables: Vec<Table>,
}

/// A table: a caption, columns, and rows whose first cell heads the row.
pub(super) struct Table {
    /// Its `id` in the HTML.
    pub(super) id: &'static str,
    pub(super) caption: &'static str,
    pub(super) columns: Vec<Column>,
    pub(super) rows: Vec<Row>,
    /// Said instead of an empty table.
    pub(super) empty: &'static str,
    /// Said after the table, e.g. that it lists only the first 50.
    pub(super) note: Option<String>,
}

/// A column.
pub(super) struct Column {
    pub(super) title: &'static str,
    /// The name of the value (`data-field` of its cells in the HTML).
    pub(super) field: &'static str,
}

/// A row, found in the HTML by its `data-key`.
pub(super) struct Row {
    pub(super) key: String,
    pub(super) cells: Vec<Cell>,
}

/// What a cell holds.
pub(super) enum Cell {
    /// Text from the logs: attacker-controlled (paths, hosts, certificate fields).
    Text(String),
    /// A placeholder of the report's own, shown in italics, e.g. "no certificate".
    Absent(&'static str),
    /// A count (right-aligned; `data-count` in the HTML).
    Count(u64),
    /// A signed number of days.
    Days(i64),
    Time(Timestamp),
}

impl Cell {
    /// The text or the placeholder.
    fn text_or(text: Option<&String>, absent: &'static str) -> Cell {
        match text {
            Some(text) => Cell::Text(text.clone()),
            None => Cell::Absent(absent),
        }
    }
}

fn column(title: &'static str, field: &'static str) -> Column {
    Column { title, field }
}

/// The headline numbers.
pub(super) fn totals(summary: &Summary) -> Vec<Total> {
    let totals = &summary.totals;
    let total = |field, label, value| Total {
        field,
        label,
        value,
    };
    vec![
        total(
            "handshakes_accepted",
            "Handshakes accepted",
            totals.handshakes_accepted,
        ),
        total(
            "handshakes_refused",
            "Handshakes refused",
            totals.handshakes_refused,
        ),
        total("requests", "Requests", totals.requests),
        total(
            "requests_refused",
            "Requests refused by moat",
            totals.requests_refused,
        ),
        total("clients", "Client certificates seen", totals.clients),
        total(
            "expiring_certificates",
            "Certificates near expiry",
            summary.expiring_certificates.len() as u64,
        ),
        total("reloads", "Configuration reloads", totals.reloads),
        total("reload_failures", "Reloads refused", totals.reload_failures),
    ]
}

/// Every section, in reading order; the edge's only when its log has edge events.
pub(super) fn sections(summary: &Summary) -> Vec<Section> {
    let mut sections = vec![
        traffic(summary),
        refusals(summary),
        clients(summary),
        certificates(summary),
        reloads(summary),
    ];
    let edge = &summary.edge;
    if edge.agent_connects
        + edge.agent_disconnects
        + edge.endpoints_published
        + edge.endpoints_removed
        > 0
    {
        sections.push(edge_section(summary));
    }
    sections.push(activity(summary));
    sections.push(input(summary));
    sections
}

fn traffic(summary: &Summary) -> Section {
    let classes = Table {
        id: "requests-by-class",
        caption: "Requests by status class",
        columns: vec![column("Status", "class"), column("Requests", "count")],
        rows: summary
            .totals
            .requests_by_class
            .named()
            .into_iter()
            .map(|(class, count)| Row {
                key: class.to_owned(),
                cells: vec![Cell::Text(class.to_owned()), Cell::Count(count)],
            })
            .collect(),
        empty: "No requests.",
        note: None,
    };
    let endpoints = Table {
        id: "endpoints",
        caption: "By endpoint",
        columns: vec![
            column("Endpoint", "endpoint"),
            column("Handshakes accepted", "handshakes_accepted"),
            column("Handshakes refused", "handshakes_refused"),
            column("Requests", "requests"),
            column("Requests refused", "requests_refused"),
        ],
        rows: summary
            .endpoints
            .iter()
            .map(|endpoint| Row {
                key: endpoint.endpoint.clone(),
                cells: vec![
                    Cell::Text(endpoint.endpoint.clone()),
                    Cell::Count(endpoint.handshakes_accepted),
                    Cell::Count(endpoint.handshakes_refused),
                    Cell::Count(endpoint.requests),
                    Cell::Count(endpoint.requests_refused),
                ],
            })
            .collect(),
        empty: "No handshakes or requests.",
        note: None,
    };
    let totals = &summary.totals;
    Section {
        id: "traffic",
        title: "Traffic",
        intro: vec![format!(
            "{} handshakes ({} accepted, {} refused) and {} requests; {} bytes received and {} sent in request and response bodies.",
            totals.handshakes,
            totals.handshakes_accepted,
            totals.handshakes_refused,
            totals.requests,
            totals.bytes_in,
            totals.bytes_out
        )],
        tables: vec![classes, endpoints],
    }
}

fn refusals(summary: &Summary) -> Section {
    let by_reason = reasons_table(
        "refusals-by-reason",
        "Refused handshakes by reason",
        "Handshakes",
        "No handshake was refused.",
        &summary.refusals_by_reason,
    );
    let by_client = Table {
        id: "refusals-by-client",
        caption: "Refusals by client",
        columns: vec![
            column("Client certificate subject", "subject"),
            column("Handshakes refused", "handshakes_refused"),
            column("Requests refused", "requests_refused"),
            column("Reasons", "reasons"),
        ],
        rows: summary
            .refusals_by_client
            .iter()
            .map(|client| {
                let reasons: Vec<String> = client
                    .reasons
                    .iter()
                    .map(|reason| format!("{} ×{}", reason.reason, reason.count))
                    .collect();
                Row {
                    key: client.subject.clone().unwrap_or_default(),
                    cells: vec![
                        Cell::text_or(client.subject.as_ref(), "no certificate"),
                        Cell::Count(client.handshakes_refused),
                        Cell::Count(client.requests_refused),
                        Cell::Text(reasons.join(", ")),
                    ],
                }
            })
            .collect(),
        empty: "No client was refused.",
        note: None,
    };
    let requests = Table {
        id: "refused-requests",
        caption: "Requests refused by moat",
        columns: vec![
            column("Path", "path"),
            column("Endpoint", "endpoint"),
            column("Status", "status"),
            column("Rule", "rule"),
            column("Host", "host"),
            column("Requests", "count"),
        ],
        rows: summary
            .refused_requests
            .iter()
            .map(|refused| Row {
                key: refused.path.clone(),
                cells: vec![
                    Cell::Text(refused.path.clone()),
                    Cell::Text(refused.endpoint.clone()),
                    Cell::Text(refused.status.to_string()),
                    Cell::text_or(refused.rule.as_ref(), "none"),
                    Cell::text_or(refused.host.as_ref(), "none"),
                    Cell::Count(refused.count),
                ],
            })
            .collect(),
        empty: "moat refused no request.",
        note: (summary.refused_requests.len() == super::REFUSED_REQUESTS_LISTED).then(|| {
            format!(
                "The {} most frequent; the totals count all {}.",
                super::REFUSED_REQUESTS_LISTED,
                summary.totals.requests_refused
            )
        }),
    };
    Section {
        id: "refusals",
        title: "Refusals",
        intro: vec![
            "A refused handshake never became a request; a refused request is a 4xx moat sent itself (403 by an access rule, 400 for a path or host it will not judge, 421, 408), never one from the upstream.".to_owned(),
        ],
        tables: vec![by_reason, by_client, requests],
    }
}

fn clients(summary: &Summary) -> Section {
    let table = Table {
        id: "clients",
        caption: "Client certificates seen",
        columns: vec![
            column("Subject", "subject"),
            column("Issuer", "issuer"),
            column("First seen", "first_seen"),
            column("Last seen", "last_seen"),
            column("Handshakes accepted", "handshakes_accepted"),
            column("Handshakes refused", "handshakes_refused"),
            column("Requests", "requests"),
            column("Requests refused", "requests_refused"),
            column("Certificates", "certificates"),
        ],
        rows: summary
            .clients
            .iter()
            .map(|client| Row {
                key: client.subject.clone(),
                cells: vec![
                    Cell::Text(client.subject.clone()),
                    Cell::text_or(client.issuer.as_ref(), "unknown"),
                    Cell::Time(client.first_seen),
                    Cell::Time(client.last_seen),
                    Cell::Count(client.handshakes_accepted),
                    Cell::Count(client.handshakes_refused),
                    Cell::Count(client.requests),
                    Cell::Count(client.requests_refused),
                    Cell::Count(client.certificates),
                ],
            })
            .collect(),
        empty: "No client certificate was presented.",
        note: None,
    };
    Section {
        id: "clients",
        title: "Clients",
        intro: vec![
            "Every client certificate presented, accepted or refused, by subject and issuer; a request counts for the certificate of its connection.".to_owned(),
        ],
        tables: vec![table],
    }
}

fn certificates(summary: &Summary) -> Section {
    let table = Table {
        id: "expiring-certificates",
        caption: "Client certificates near expiry",
        columns: vec![
            column("Subject", "subject"),
            column("Issuer", "issuer"),
            column("Serial", "serial"),
            column("Not after", "not_after"),
            column("Days left", "days_left"),
            column("When", "status"),
            column("Last seen", "last_seen"),
            column("Last handshake", "last_outcome"),
        ],
        rows: summary
            .expiring_certificates
            .iter()
            .map(|certificate| Row {
                key: certificate.fingerprint_sha256.clone(),
                cells: vec![
                    Cell::Text(certificate.subject.clone()),
                    Cell::Text(certificate.issuer.clone()),
                    Cell::Text(certificate.serial.clone()),
                    Cell::Time(certificate.not_after),
                    Cell::Days(certificate.days_left),
                    Cell::Text(certificate.status.as_str().replace('_', " ")),
                    Cell::Time(certificate.last_seen),
                    Cell::Text(certificate.last_outcome.clone()),
                ],
            })
            .collect(),
        empty: "No client certificate seen expires before the horizon.",
        note: None,
    };
    Section {
        id: "certificates",
        title: "Certificates near expiry",
        intro: vec![format!(
            "Client certificates seen in the window that expire before {} (days left are counted from the window's end).",
            summary.window.expiry_horizon
        )],
        tables: vec![table],
    }
}

fn reloads(summary: &Summary) -> Section {
    let reloads = &summary.reloads;
    let table = Table {
        id: "reloads",
        caption: "Reloads",
        columns: vec![column("Time", "time"), column("Outcome", "outcome")],
        rows: reloads
            .latest
            .iter()
            .map(|reload| Row {
                key: reload.time.to_string(),
                cells: vec![Cell::Time(reload.time), Cell::Text(reload.outcome.clone())],
            })
            .collect(),
        empty: "No reload.",
        note: (reloads.latest.len() as u64 != reloads.success + reloads.failure)
            .then(|| format!("The latest {}.", reloads.latest.len())),
    };
    Section {
        id: "reloads",
        title: "Configuration reloads",
        intro: vec![format!(
            "{} reloads took effect and {} were refused (the running configuration stayed); the log names what changed or why.",
            reloads.success, reloads.failure
        )],
        tables: vec![table],
    }
}

fn edge_section(summary: &Summary) -> Section {
    let edge = &summary.edge;
    let agents = Table {
        id: "agents",
        caption: "Agents",
        columns: vec![
            column("Agent", "agent"),
            column("Sessions opened", "connects"),
            column("Sessions ended", "disconnects"),
            column("First seen", "first_seen"),
            column("Last seen", "last_seen"),
            column("Last address", "last_address"),
            column("Last end", "last_disconnect_reason"),
        ],
        rows: edge
            .agents
            .iter()
            .map(|agent| Row {
                key: agent.agent.clone(),
                cells: vec![
                    Cell::Text(agent.agent.clone()),
                    Cell::Count(agent.connects),
                    Cell::Count(agent.disconnects),
                    Cell::Time(agent.first_seen),
                    Cell::Time(agent.last_seen),
                    Cell::Text(agent.last_address.clone()),
                    Cell::text_or(agent.last_disconnect_reason.as_ref(), "connected"),
                ],
            })
            .collect(),
        empty: "No agent session.",
        note: None,
    };
    Section {
        id: "edge",
        title: "Edge: agents and endpoints",
        intro: vec![format!(
            "{} agent sessions opened and {} ended; {} endpoints published and {} removed.",
            edge.agent_connects,
            edge.agent_disconnects,
            edge.endpoints_published,
            edge.endpoints_removed
        )],
        tables: vec![
            agents,
            reasons_table(
                "disconnects-by-reason",
                "Why agent sessions ended",
                "Sessions",
                "No agent session ended.",
                &edge.disconnects_by_reason,
            ),
            reasons_table(
                "removals-by-reason",
                "Why endpoints were removed",
                "Endpoints",
                "No endpoint was removed.",
                &edge.removals_by_reason,
            ),
        ],
    }
}

/// A table of reasons and how often each was given (`count_title` names what was counted).
fn reasons_table(
    id: &'static str,
    caption: &'static str,
    count_title: &'static str,
    empty: &'static str,
    counts: &[ReasonCount],
) -> Table {
    Table {
        id,
        caption,
        columns: vec![column("Reason", "reason"), column(count_title, "count")],
        rows: counts
            .iter()
            .map(|reason| Row {
                key: reason.reason.clone(),
                cells: vec![Cell::Text(reason.reason.clone()), Cell::Count(reason.count)],
            })
            .collect(),
        empty,
        note: None,
    }
}

fn activity(summary: &Summary) -> Section {
    let activity = &summary.activity;
    let table = Table {
        id: "activity",
        caption: "Activity (slices with events)",
        columns: vec![
            column("From", "start"),
            column("Handshakes accepted", "handshakes_accepted"),
            column("Handshakes refused", "handshakes_refused"),
            column("Requests", "requests"),
        ],
        rows: activity
            .buckets
            .iter()
            .filter(|bucket| {
                bucket.handshakes_accepted + bucket.handshakes_refused + bucket.requests > 0
            })
            .map(|bucket| Row {
                key: bucket.start.to_string(),
                cells: vec![
                    Cell::Time(bucket.start),
                    Cell::Count(bucket.handshakes_accepted),
                    Cell::Count(bucket.handshakes_refused),
                    Cell::Count(bucket.requests),
                ],
            })
            .collect(),
        empty: "No handshake or request.",
        note: None,
    };
    Section {
        id: "activity",
        title: "Activity",
        intro: vec![format!(
            "Handshakes and requests per {}.",
            slice_name(activity.bucket_seconds)
        )],
        tables: vec![table],
    }
}

fn input(summary: &Summary) -> Section {
    let lines = &summary.lines;
    let skipped = Table {
        id: "skipped-lines",
        caption: "Lines that are not audit events",
        columns: vec![
            column("File", "source"),
            column("Line", "line"),
            column("Why", "why"),
        ],
        rows: lines
            .skipped
            .iter()
            .map(|line| Row {
                key: format!("{}:{}", line.source, line.line),
                cells: vec![
                    Cell::Text(line.source.clone()),
                    Cell::Count(line.line),
                    Cell::Text(line.why.clone()),
                ],
            })
            .collect(),
        empty: "Every line is an audit event.",
        note: (lines.not_events > lines.skipped.len() as u64)
            .then(|| format!("The first {} of {}.", lines.skipped.len(), lines.not_events)),
    };
    Section {
        id: "input",
        title: "Input",
        intro: vec![format!(
            "{} lines read from {}: {} events counted, {} outside the window or of another endpoint, {} of a kind this moat does not know, {} not audit events.",
            lines.read,
            summary.sources.join(", "),
            lines.counted,
            lines.filtered_out,
            lines.unknown_events,
            lines.not_events
        )],
        tables: vec![skipped],
    }
}

/// "minute", "5 minutes", "hour", "day"... for a slice of `seconds`.
pub(super) fn slice_name(seconds: i64) -> String {
    let (count, unit) = match seconds {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if count == 1 {
        unit.to_owned()
    } else {
        format!("{count} {unit}s")
    }
}

/// The window in words: "from … to …", "endpoint …".
pub(super) fn window_sentence(summary: &Summary) -> String {
    let window = &summary.window;
    let from = window
        .since
        .map_or_else(|| "the first event".to_owned(), |since| since.to_string());
    let to = window
        .until
        .map_or_else(|| "the last event".to_owned(), |until| until.to_string());
    let endpoint = window.endpoint.as_ref().map_or_else(
        || "every endpoint".to_owned(),
        |name| format!("endpoint {name}"),
    );
    let found = match (window.first_event, window.last_event) {
        (Some(first), Some(last)) => format!("events from {first} to {last}"),
        _ => "no event".to_owned(),
    };
    format!("From {from} to {to}, {endpoint}: {found}.")
}
