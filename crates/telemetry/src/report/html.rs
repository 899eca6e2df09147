//! The HTML report: one self-contained page (inline CSS, bar charts drawn here as inline SVG,
//! no script, nothing loaded) that a Content-Security-Policy keeps that way. Everything from
//! the logs is attacker-controlled (paths, hosts, certificate subjects), so markup is only ever
//! written from `&'static str` literals and all other text goes through [`escape_into`].
//!
//! For tests and scripts the numbers carry data attributes: each headline number
//! `data-total="FIELD" data-count="N"`, each table row `data-key`, each number in it
//! `data-field="FIELD" data-count="N"`, each chart bar `data-key` and `data-count`.

use std::fmt::Write as _;

use super::Summary;
use super::summary::Timestamp;
use super::tables::{self, Cell, Section, Table};

/// Nothing may be loaded (scripts, images, fonts, frames, fetches): the inline `<style>` is
/// the page's only resource; `img-src data:` leaves room for an inline image. Without any
/// `script-src` no script runs, an injected one included.
const CONTENT_SECURITY_POLICY: &str = concat!(
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; ",
    "base-uri 'none'; form-action 'none'"
);

/// The page's style: readable from 360 px wide up (tables scroll sideways inside their own
/// box, the headline numbers wrap), a visible focus ring, light and dark.
const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1f2937; --bg: #ffffff; --muted: #4b5563; --line: #d1d5db;
  --link: #1d4ed8; --accepted: #2563eb; --refused: #c2410c; --requests: #0f766e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e5e7eb; --bg: #111827; --muted: #9ca3af;
  --line: #374151; --link: #93c5fd; --accepted: #60a5fa; --refused: #fb923c; --requests: #2dd4bf; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); overflow-wrap: anywhere; }
header, nav, main, footer { max-width: 72rem; margin: 0 auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 1rem 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; padding-bottom: .2rem; border-bottom: 1px solid var(--line); }
a { color: var(--link); }
:focus-visible { outline: 3px solid var(--link); outline-offset: 2px; }
nav ul { list-style: none; padding: 0; margin: .5rem 0; display: flex; flex-wrap: wrap; gap: .25rem 1rem; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: .5rem; margin: 0; }
.totals div { border: 1px solid var(--line); border-radius: .4rem; padding: .5rem .75rem; }
.totals dt { font-size: .85rem; color: var(--muted); }
.totals dd { margin: 0; font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.table { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
thead th { font-size: .8rem; color: var(--muted); overflow-wrap: normal; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
figure { margin: .5rem 0 1rem; max-width: 40rem; }
figcaption { font-weight: 600; font-size: .9rem; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 13px system-ui, sans-serif; fill: currentColor; }
.accepted { fill: var(--accepted); background: var(--accepted); }
.refused { fill: var(--refused); background: var(--refused); }
.requests { fill: var(--requests); background: var(--requests); }
.legend { font-size: .85rem; margin: .25rem 0; }
.swatch { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 .6em; }
.empty, .note, footer { color: var(--muted); }
footer { margin-top: 2rem; padding-bottom: 2rem; font-size: .85rem; }
@media print { nav { display: none; } .table { overflow: visible; } }
"#;

/// Bars listed in a chart of the most frequent: the tables hold the rest.
const CHART_BARS: usize = 10;

/// Characters of a label shown in a chart (the table beside it holds the whole text).
const CHART_LABEL: usize = 48;

/// The page being written. Markup goes in only as literals; text only escaped.
struct Page(String);

impl Page {
    /// Markup of the report's own.
    fn markup(&mut self, markup: &'static str) -> &mut Page {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped (also fit for an attribute value between double quotes).
    fn text(&mut self, text: &str) -> &mut Page {
        escape_into(&mut self.0, text);
        self
    }

    /// A number of the report's own.
    fn number(&mut self, number: impl std::fmt::Display) -> &mut Page {
        let _ = write!(self.0, "{number}");
        self
    }

    /// An SVG coordinate, to a tenth.
    fn coordinate(&mut self, value: f64) -> &mut Page {
        let _ = write!(self.0, "{value:.1}");
        self
    }

    fn time(&mut self, time: Timestamp) -> &mut Page {
        self.markup("<time datetime=\"")
            .text(&time.rfc3339())
            .markup("\">")
            .text(&time.to_string())
            .markup("</time>")
    }
}

/// The page's one escaping function: `&`, `<`, `>`, `"` and `'` become character references,
/// so the text can neither open markup nor leave an attribute value; control characters
/// (other than tab and line feed) become U+FFFD.
fn escape_into(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(character),
            character if character.is_control() => out.push('\u{FFFD}'),
            character => out.push(character),
        }
    }
}

/// The report as one HTML page.
pub(super) fn render(summary: &Summary) -> String {
    let mut page = Page(String::with_capacity(64 << 10));
    page.markup("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .markup("<meta http-equiv=\"Content-Security-Policy\" content=\"")
        .markup(CONTENT_SECURITY_POLICY)
        .markup("\">\n<meta name=\"referrer\" content=\"no-referrer\">\n")
        .markup("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
        .markup("<title>moat audit report</title>\n<style>")
        .markup(STYLE)
        .markup(
            "</style>\n</head>\n<body>\n<header>\n<h1>moat audit report</h1>\n<p id=\"window\">",
        )
        .text(&tables::window_sentence(summary))
        .markup("</p>\n<p>Made ")
        .time(summary.generated_at)
        .markup(" from ")
        .text(&summary.sources.join(", "))
        .markup(".</p>\n</header>\n");

    let sections = tables::sections(summary);
    page.markup("<nav aria-label=\"Sections\">\n<ul>\n<li><a href=\"#summary\">Summary</a></li>\n");
    for section in &sections {
        page.markup("<li><a href=\"#")
            .markup(section.id)
            .markup("\">")
            .markup(section.title)
            .markup("</a></li>\n");
    }
    page.markup("</ul>\n</nav>\n<main>\n");

    page.markup("<section id=\"summary\" aria-labelledby=\"summary-title\">\n")
        .markup("<h2 id=\"summary-title\">Summary</h2>\n<dl class=\"totals\">\n");
    for total in tables::totals(summary) {
        page.markup("<div><dt>")
            .markup(total.label)
            .markup("</dt><dd data-total=\"")
            .markup(total.field)
            .markup("\" data-count=\"")
            .number(total.value)
            .markup("\">")
            .number(total.value)
            .markup("</dd></div>\n");
    }
    page.markup("</dl>\n</section>\n");

    for section in &sections {
        write_section(&mut page, section, summary);
    }
    page.markup("</main>\n<footer>\n<p>Made by moat ")
        .markup(env!("CARGO_PKG_VERSION"))
        .markup(". This page loads nothing and runs no script.</p>\n</footer>\n</body>\n</html>\n");
    page.0
}

fn write_section(page: &mut Page, section: &Section, summary: &Summary) {
    page.markup("<section id=\"")
        .markup(section.id)
        .markup("\" aria-labelledby=\"")
        .markup(section.id)
        .markup("-title\">\n<h2 id=\"")
        .markup(section.id)
        .markup("-title\">")
        .markup(section.title)
        .markup("</h2>\n");
    for sentence in &section.intro {
        page.markup("<p>").text(sentence).markup("</p>\n");
    }
    write_charts(page, section.id, summary);
    for table in &section.tables {
        write_table(page, table);
    }
    page.markup("</section>\n");
}

fn write_table(page: &mut Page, table: &Table) {
    if table.rows.is_empty() {
        page.markup("<p class=\"empty\" id=\"")
            .markup(table.id)
            .markup("\"><strong>")
            .markup(table.caption)
            .markup(":</strong> ")
            .markup(table.empty)
            .markup("</p>\n");
        return;
    }
    // A region that scrolls sideways in a narrow window; focusable, so keys scroll it too.
    page.markup("<div class=\"table\" role=\"region\" tabindex=\"0\" aria-labelledby=\"")
        .markup(table.id)
        .markup("-caption\">\n<table id=\"")
        .markup(table.id)
        .markup("\">\n<caption id=\"")
        .markup(table.id)
        .markup("-caption\">")
        .markup(table.caption)
        .markup("</caption>\n<thead><tr>");
    for column in &table.columns {
        page.markup("<th scope=\"col\">")
            .markup(column.title)
            .markup("</th>");
    }
    page.markup("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        page.markup("<tr data-key=\"").text(&row.key).markup("\">");
        for (index, (cell, column)) in row.cells.iter().zip(&table.columns).enumerate() {
            let numeric = matches!(cell, Cell::Count(_) | Cell::Days(_));
            page.markup(match (index, numeric) {
                (0, _) => "<th scope=\"row\"",
                (_, true) => "<td class=\"num\"",
                (_, false) => "<td",
            })
            .markup(" data-field=\"")
            .markup(column.field)
            .markup("\"");
            match cell {
                Cell::Count(count) => {
                    page.markup(" data-count=\"")
                        .number(count)
                        .markup("\">")
                        .number(count);
                }
                Cell::Days(days) => {
                    page.markup(" data-count=\"")
                        .number(days)
                        .markup("\">")
                        .number(days);
                }
                Cell::Text(text) => {
                    page.markup(">").text(text);
                }
                Cell::Absent(placeholder) => {
                    page.markup("><em>").markup(placeholder).markup("</em>");
                }
                Cell::Time(time) => {
                    page.markup(">").time(*time);
                }
            }
            page.markup(if index == 0 { "</th>" } else { "</td>" });
        }
        page.markup("</tr>\n");
    }
    page.markup("</tbody>\n</table>\n</div>\n");
    if let Some(note) = &table.note {
        page.markup("<p class=\"note\">")
            .text(note)
            .markup("</p>\n");
    }
}

/// One bar of a chart of counts.
struct Bar {
    label: String,
    count: u64,
}

/// The charts that open a section.
fn write_charts(page: &mut Page, section: &str, summary: &Summary) {
    let bars = |items: Vec<(String, u64)>| -> Vec<Bar> {
        items
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .take(CHART_BARS)
            .map(|(label, count)| Bar { label, count })
            .collect()
    };
    match section {
        "traffic" => {
            let totals = &summary.totals;
            page.markup("<div class=\"charts\">\n");
            bar_chart(
                page,
                "chart-handshakes",
                "Handshakes",
                &[
                    ("accepted", totals.handshakes_accepted, "accepted"),
                    ("refused", totals.handshakes_refused, "refused"),
                ]
                .map(|(label, count, class)| {
                    (
                        Bar {
                            label: label.to_owned(),
                            count,
                        },
                        class,
                    )
                }),
            );
            let classes = bars(
                totals
                    .requests_by_class
                    .named()
                    .iter()
                    .map(|(class, count)| ((*class).to_owned(), *count))
                    .collect(),
            );
            bar_chart(
                page,
                "chart-requests-by-class",
                "Requests by status class",
                &with_class(classes, "requests"),
            );
            page.markup("</div>\n");
        }
        "refusals" => {
            let reasons = bars(
                summary
                    .refusals_by_reason
                    .iter()
                    .map(|reason| (reason.reason.clone(), reason.count))
                    .collect(),
            );
            let clients = bars(
                summary
                    .refusals_by_client
                    .iter()
                    .map(|client| {
                        let subject = client
                            .subject
                            .clone()
                            .unwrap_or_else(|| "(no certificate)".to_owned());
                        (subject, client.handshakes_refused + client.requests_refused)
                    })
                    .collect(),
            );
            page.markup("<div class=\"charts\">\n");
            bar_chart(
                page,
                "chart-refusals-by-reason",
                "Refused handshakes by reason",
                &with_class(reasons, "refused"),
            );
            bar_chart(
                page,
                "chart-refusals-by-client",
                "Refusals by client (most refused)",
                &with_class(clients, "refused"),
            );
            page.markup("</div>\n");
        }
        "clients" => {
            let mut by_requests: Vec<(String, u64)> = summary
                .clients
                .iter()
                .map(|client| (client.subject.clone(), client.requests))
                .collect();
            by_requests.sort_by_key(|(_, requests)| std::cmp::Reverse(*requests));
            page.markup("<div class=\"charts\">\n");
            bar_chart(
                page,
                "chart-requests-by-client",
                "Requests by client (most active)",
                &with_class(bars(by_requests), "accepted"),
            );
            page.markup("</div>\n");
        }
        "activity" => activity_charts(page, summary),
        _ => {}
    }
}

fn with_class(bars: Vec<Bar>, class: &'static str) -> Vec<(Bar, &'static str)> {
    bars.into_iter().map(|bar| (bar, class)).collect()
}

/// A horizontal bar chart: each bar under its label, its count at its end, lengths relative
/// to the largest.
fn bar_chart(page: &mut Page, id: &'static str, title: &'static str, bars: &[(Bar, &'static str)]) {
    /// The drawing's width in SVG units; it is scaled to the figure's width.
    const WIDTH: f64 = 420.0;
    /// Room left of the longest bar for its count.
    const COUNT_ROOM: f64 = 64.0;
    const ROW: f64 = 36.0;
    page.markup("<figure>\n<figcaption id=\"")
        .markup(id)
        .markup("-title\">")
        .markup(title)
        .markup("</figcaption>\n");
    if bars.is_empty() {
        page.markup("<p class=\"empty\">Nothing to draw.</p>\n</figure>\n");
        return;
    }
    let largest = bars
        .iter()
        .map(|(bar, _)| bar.count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let height = ROW * bars.len() as f64 + 4.0;
    page.markup("<svg id=\"")
        .markup(id)
        .markup("\" viewBox=\"0 0 ")
        .coordinate(WIDTH)
        .markup(" ")
        .coordinate(height)
        .markup("\" role=\"img\" aria-labelledby=\"")
        .markup(id)
        .markup("-title\">\n");
    for (index, (bar, class)) in bars.iter().enumerate() {
        let top = ROW * index as f64;
        let length = ((WIDTH - COUNT_ROOM) * bar.count as f64 / largest).max(1.0);
        page.markup("<g data-key=\"")
            .text(&bar.label)
            .markup("\" data-count=\"")
            .number(bar.count)
            .markup("\"><title>")
            .text(&bar.label)
            .markup(": ")
            .number(bar.count)
            .markup("</title><text x=\"0\" y=\"")
            .coordinate(top + 13.0)
            .markup("\">")
            .text(&shortened(&bar.label))
            .markup("</text><rect class=\"")
            .markup(class)
            .markup("\" x=\"0\" y=\"")
            .coordinate(top + 18.0)
            .markup("\" width=\"")
            .coordinate(length)
            .markup("\" height=\"14\" rx=\"2\"></rect><text x=\"")
            .coordinate(length + 6.0)
            .markup("\" y=\"")
            .coordinate(top + 30.0)
            .markup("\">")
            .number(bar.count)
            .markup("</text></g>\n");
    }
    page.markup("</svg>\n</figure>\n");
}

/// `label` cut to [`CHART_LABEL`] characters.
fn shortened(label: &str) -> String {
    if label.chars().count() <= CHART_LABEL {
        return label.to_owned();
    }
    let mut short: String = label.chars().take(CHART_LABEL - 1).collect();
    short.push('…');
    short
}

/// Two column charts over the window's slices: handshakes (accepted under refused) and
/// requests.
fn activity_charts(page: &mut Page, summary: &Summary) {
    let buckets = &summary.activity.buckets;
    if buckets.is_empty() {
        return;
    }
    let slice = tables::slice_name(summary.activity.bucket_seconds);
    page.markup("<div class=\"charts\">\n");
    let handshakes: Vec<Vec<(u64, &'static str)>> = buckets
        .iter()
        .map(|bucket| {
            vec![
                (bucket.handshakes_accepted, "accepted"),
                (bucket.handshakes_refused, "refused"),
            ]
        })
        .collect();
    column_chart(
        page,
        "chart-activity-handshakes",
        "Handshakes",
        &slice,
        summary,
        &handshakes,
    );
    let requests: Vec<Vec<(u64, &'static str)>> = buckets
        .iter()
        .map(|bucket| vec![(bucket.requests, "requests")])
        .collect();
    column_chart(
        page,
        "chart-activity-requests",
        "Requests",
        &slice,
        summary,
        &requests,
    );
    page.markup("</div>\n");
}

/// Columns of stacked parts (a count and its CSS class, which also names it in the legend),
/// one per slice, with the first and last slice's start below.
fn column_chart(
    page: &mut Page,
    id: &'static str,
    title: &'static str,
    slice: &str,
    summary: &Summary,
    columns: &[Vec<(u64, &'static str)>],
) {
    const WIDTH: f64 = 420.0;
    const PLOT: f64 = 140.0;
    let buckets = &summary.activity.buckets;
    let largest = columns
        .iter()
        .map(|parts| parts.iter().map(|(count, _)| count).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = WIDTH / columns.len().max(1) as f64;
    page.markup("<figure>\n<figcaption id=\"")
        .markup(id)
        .markup("-title\">")
        .markup(title)
        .markup(" per ")
        .text(slice)
        .markup(" (largest: ")
        .number(largest as u64)
        .markup(")</figcaption>\n<svg id=\"")
        .markup(id)
        .markup("\" viewBox=\"0 0 ")
        .coordinate(WIDTH)
        .markup(" ")
        .coordinate(PLOT + 22.0)
        .markup("\" role=\"img\" aria-labelledby=\"")
        .markup(id)
        .markup("-title\">\n");
    for (index, (parts, bucket)) in columns.iter().zip(buckets).enumerate() {
        let total: u64 = parts.iter().map(|(count, _)| count).sum();
        let x = step * index as f64;
        page.markup("<g data-key=\"")
            .text(&bucket.start.rfc3339())
            .markup("\" data-count=\"")
            .number(total)
            .markup("\"><title>")
            .text(&bucket.start.to_string())
            .markup(": ")
            .number(total)
            .markup("</title>");
        let mut bottom = PLOT;
        for (count, class) in parts {
            if *count == 0 {
                continue;
            }
            let height = PLOT * *count as f64 / largest;
            bottom -= height;
            page.markup("<rect class=\"")
                .markup(class)
                .markup("\" x=\"")
                .coordinate(x + step * 0.1)
                .markup("\" y=\"")
                .coordinate(bottom)
                .markup("\" width=\"")
                .coordinate(step * 0.8)
                .markup("\" height=\"")
                .coordinate(height)
                .markup("\"></rect>");
        }
        page.markup("</g>\n");
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        page.markup("<text x=\"0\" y=\"")
            .coordinate(PLOT + 17.0)
            .markup("\">")
            .text(&first.start.to_string())
            .markup("</text><text x=\"")
            .coordinate(WIDTH)
            .markup("\" y=\"")
            .coordinate(PLOT + 17.0)
            .markup("\" text-anchor=\"end\">")
            .text(&last.start.to_string())
            .markup("</text>\n");
    }
    page.markup("</svg>\n");
    // A legend when parts are stacked: each part's class is also its name.
    let mut classes: Vec<&'static str> = Vec::new();
    for (_, class) in columns.iter().flatten() {
        if !classes.contains(class) {
            classes.push(class);
        }
    }
    if classes.len() > 1 {
        page.markup("<p class=\"legend\">");
        for class in classes {
            page.markup("<span class=\"swatch ")
                .markup(class)
                .markup("\"></span>")
                .markup(class);
        }
        page.markup("</p>\n");
    }
    page.markup("</figure>\n");
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    #[test]
    fn escaping_leaves_no_markup_and_no_way_out_of_an_attribute() {
        let mut out = String::new();
        escape_into(&mut out, "<script>alert('x')</script> \"&\" \u{0}");
        assert_eq!(
            out,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;&amp;&quot; \u{FFFD}"
        );
    }
}
