//! The JSON report: the [`Summary`] as it is, pretty-printed, its field names stable under
//! [`super::REPORT_FORMAT`].

use super::Summary;

/// The report as JSON, ending in a newline.
pub(super) fn render(summary: &Summary) -> String {
    // Strings, numbers and timestamps only: serializing cannot fail, but if it ever did the
    // output would still be JSON that says so.
    let mut text = serde_json::to_string_pretty(summary).unwrap_or_else(|error| {
        serde_json::json!({ "error": format!("cannot encode the report: {error}") }).to_string()
    });
    text.push('\n');
    text
}
