//! The Markdown report: the sections of [`super::tables`] as headings, sentences and pipe
//! tables, every text from the logs escaped so that it reads as the text it is.

use std::fmt::Write as _;

use super::Summary;
use super::tables::{self, Cell, Table};

/// The report as Markdown.
pub(super) fn render(summary: &Summary) -> String {
    let mut out = String::new();
    out.push_str("# moat audit report\n\n");
    let _ = writeln!(out, "{}\n", text(&tables::window_sentence(summary)));
    let _ = writeln!(
        out,
        "Made {} from {}.\n",
        summary.generated_at,
        text(&summary.sources.join(", "))
    );
    out.push_str("| Total | Count |\n|---|---:|\n");
    for total in tables::totals(summary) {
        let _ = writeln!(out, "| {} | {} |", total.label, total.value);
    }
    for section in tables::sections(summary) {
        let _ = write!(out, "\n## {}\n\n", section.title);
        for sentence in &section.intro {
            let _ = writeln!(out, "{}\n", text(sentence));
        }
        for table in &section.tables {
            write_table(&mut out, table);
        }
    }
    out
}

fn write_table(out: &mut String, table: &Table) {
    let _ = write!(out, "### {}\n\n", table.caption);
    if table.rows.is_empty() {
        let _ = write!(out, "{}\n\n", table.empty);
        return;
    }
    let titles: Vec<&str> = table.columns.iter().map(|column| column.title).collect();
    let _ = writeln!(out, "| {} |", titles.join(" | "));
    // Numbers align right; the alignment comes from the first row's cells.
    let alignments: Vec<&str> = table.rows[0]
        .cells
        .iter()
        .map(|cell| match cell {
            Cell::Count(_) | Cell::Days(_) => "---:",
            _ => "---",
        })
        .collect();
    let _ = writeln!(out, "|{}|", alignments.join("|"));
    for row in &table.rows {
        let cells: Vec<String> = row.cells.iter().map(cell).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    if let Some(note) = &table.note {
        let _ = write!(out, "{}\n\n", text(note));
    }
}

fn cell(cell: &Cell) -> String {
    match cell {
        Cell::Text(value) => text(value),
        Cell::Absent(placeholder) => format!("*{placeholder}*"),
        Cell::Count(count) => count.to_string(),
        Cell::Days(days) => days.to_string(),
        Cell::Time(time) => time.to_string(),
    }
}

/// `value` as Markdown text that renders as exactly those characters: every character that
/// Markdown or a table gives a meaning is backslash-escaped (CommonMark escapes any ASCII
/// punctuation), `<` `>` `&` included so that no renderer sees HTML, and line breaks and other
/// control characters become spaces so that a table row stays one row.
pub(super) fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(character);
            }
            character if character.is_control() => out.push(' '),
            character => out.push(character),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn markdown_text_escapes_html_tables_and_emphasis() {
        assert_eq!(
            text("CN=<script>x</script>|*a*\nb"),
            "CN=\\<script\\>x\\</script\\>\\|\\*a\\* b"
        );
        assert_eq!(text("CN=alice,O=Example"), "CN=alice,O=Example");
    }
}
