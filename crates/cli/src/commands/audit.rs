//! `moat audit report`: the audit log summed up for a periodic review, as Markdown, JSON or a
//! self-contained HTML page (the reading and counting are `moat_telemetry::report`'s).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use moat_telemetry::report::{Format, Report, ReportOptions};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// The `moat audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Sum up audit logs for a periodic review: handshakes and requests, refusals by reason and
    /// by client, the clients seen, client certificates near expiry, configuration reloads and
    /// an edge's agents, with charts in the HTML.
    Report(ReportArgs),
}

/// Flags of `moat audit report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Audit logs (JSON lines, as --audit-log writes them), read in order: rotated files may
    /// be given together, oldest first.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Count events at or after T: an RFC 3339 time (2026-11-01T00:00:00Z), a date
    /// (2026-11-01, midnight UTC) or a time back from now (7d, 12h, 1d12h, 30m).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Count events before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Count only this endpoint's handshakes and requests (an edge's: this hostname's);
    /// reloads and agent sessions concern every endpoint and stay.
    #[arg(long, value_name = "NAME")]
    endpoint: Option<String>,
    /// Output format; default: from --out's extension (.html, .json, .md), else md.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,
    /// Write the report to FILE (atomically, mode 0640: it names clients) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// List client certificates that expire up to D after the window's end.
    #[arg(long, value_name = "D", default_value = "30d")]
    expiring_within: String,
}

/// `--format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// One self-contained page: inline CSS and SVG charts, no script, loads nothing.
    Html,
    /// Markdown tables.
    Md,
    /// The report's numbers as JSON (stable field names).
    Json,
}

/// The report is written like the audit log it is made from: readable by the owner's group.
const REPORT_MODE: u32 = 0o640;

/// Runs one `moat audit` subcommand.
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Report(args) => report(args),
    }
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let mut options = ReportOptions::new(now);
    options.since = args
        .since
        .as_deref()
        .map(|text| point_in_time("--since", text, now))
        .transpose()?;
    options.until = args
        .until
        .as_deref()
        .map(|text| point_in_time("--until", text, now))
        .transpose()?;
    if let (Some(since), Some(until)) = (options.since, options.until)
        && since >= until
    {
        anyhow::bail!(
            "--since {} is not before --until {}: the window is empty; swap them or widen it",
            args.since.as_deref().unwrap_or_default(),
            args.until.as_deref().unwrap_or_default()
        );
    }
    options.expiring_within = duration("--expiring-within", &args.expiring_within)?;
    options.endpoint = args.endpoint;
    let format = format(args.format, args.out.as_deref());

    let mut report = Report::new(options);
    for file in &args.files {
        report.read_file(file)?;
    }
    let summary = report.finish();
    let lines = &summary.lines;
    if lines.not_events > 0 {
        let first = lines.skipped.first().map_or_else(String::new, |line| {
            format!(" (first: {} line {}: {})", line.source, line.line, line.why)
        });
        eprintln!(
            "moat: {} of {} lines are not audit events and were skipped{first}; the report lists \
             the first {} (check that the files are moat audit logs)",
            lines.not_events,
            lines.read,
            lines.skipped.len()
        );
    }
    if lines.counted == 0 {
        eprintln!(
            "moat: no event in the window ({} lines read); check --since, --until and --endpoint",
            lines.read
        );
    }
    let text = format.render(&summary);
    match &args.out {
        Some(out) => moat_pki::files::write_atomic(out, text.as_bytes(), REPORT_MODE)
            .with_context(|| format!("{}: cannot write the report", out.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("cannot write the report to stdout")?,
    }
    Ok(())
}

/// `--format`, else what `--out`'s extension says, else Markdown.
fn format(asked: Option<FormatArg>, out: Option<&Path>) -> Format {
    let asked = asked.or_else(|| {
        let extension = out?.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "html" | "htm" => Some(FormatArg::Html),
            "json" => Some(FormatArg::Json),
            "md" | "markdown" => Some(FormatArg::Md),
            _ => None,
        }
    });
    match asked.unwrap_or(FormatArg::Md) {
        FormatArg::Html => Format::Html,
        FormatArg::Md => Format::Markdown,
        FormatArg::Json => Format::Json,
    }
}

/// A point in time as `--since`/`--until` take it: RFC 3339, a date (midnight UTC), or a
/// duration back from `now`.
fn point_in_time(flag: &str, text: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    if let Some(date) = date(text) {
        return Ok(date.midnight().assume_utc());
    }
    if let Ok(ago) = parse_days_duration(text) {
        return Ok(now - ago);
    }
    anyhow::bail!(
        "{flag} {text:?} is not a time; write an RFC 3339 time (2026-11-01T00:00:00Z), a date \
         (2026-11-01, midnight UTC) or a time back from now (7d, 12h, 1d12h, 30m)"
    )
}

/// `YYYY-MM-DD`.
fn date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// A duration flag: days (`30d`) as well as what moat's other durations take (`12h`, `1m30s`).
fn duration(flag: &str, text: &str) -> anyhow::Result<time::Duration> {
    parse_days_duration(text).map_err(|message| anyhow::anyhow!("{flag}: {message}"))
}

/// `7d`, `1d12h`, or any duration `moat_config::parse_duration` reads (units ms, s, m, h):
/// whole days may lead.
fn parse_days_duration(text: &str) -> Result<time::Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("an empty duration; write e.g. \"7d\", \"12h\" or \"1d12h\"".to_owned());
    }
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (days, rest) = match trimmed[digits..].strip_prefix('d') {
        Some(rest) if digits > 0 => {
            let days: i64 = trimmed[..digits]
                .parse()
                .map_err(|_| format!("{text:?}: too many days"))?;
            (days, rest)
        }
        _ => (0, trimmed),
    };
    let rest = if rest.is_empty() {
        std::time::Duration::ZERO
    } else {
        moat_config::parse_duration(rest)
            .map_err(|message| format!("{message} (days are written like \"7d\" or \"1d12h\")"))?
    };
    let too_long = || format!("{text:?} is too long");
    let rest = time::Duration::try_from(rest).map_err(|_| too_long())?;
    let days = days.checked_mul(86_400).ok_or_else(too_long)?;
    time::Duration::seconds(days)
        .checked_add(rest)
        .ok_or_else(too_long)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_may_lead_with_days() {
        assert_eq!(parse_days_duration("7d"), Ok(time::Duration::days(7)));
        assert_eq!(parse_days_duration("1d12h"), Ok(time::Duration::hours(36)));
        assert_eq!(parse_days_duration("90m"), Ok(time::Duration::minutes(90)));
        assert!(parse_days_duration("d").is_err());
        assert!(parse_days_duration("7 days").is_err());
        assert!(parse_days_duration("").is_err());
    }

    #[test]
    fn points_in_time_are_rfc3339_dates_or_back_from_now() {
        let now = OffsetDateTime::parse("2026-11-30T12:00:00Z", &Rfc3339).unwrap();
        let at = |text| point_in_time("--since", text, now).unwrap();
        assert_eq!(
            at("2026-11-01T08:30:00Z"),
            now - time::Duration::hours(29 * 24 + 3) - time::Duration::minutes(30)
        );
        assert_eq!(at("2026-11-29"), now - time::Duration::hours(36));
        assert_eq!(at("1d"), now - time::Duration::days(1));
        let error = point_in_time("--since", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--since \"yesterday\" is not a time"),
            "{error}"
        );
    }
}
