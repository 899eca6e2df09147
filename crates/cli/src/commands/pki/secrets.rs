//! Reading passwords and passphrases from files, so they never appear on the command line.

use std::path::Path;

use anyhow::{Context as _, bail};

/// A secret is its file's first line, without the line ending; `what` names it in errors.
pub(crate) fn read_first_line(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read {what}", path.display()))?;
    let secret = text.lines().next().unwrap_or_default().to_owned();
    if secret.is_empty() {
        bail!(
            "{}: the file is empty; put {what} on its first line",
            path.display()
        );
    }
    Ok(secret)
}
