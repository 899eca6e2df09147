//! Naming fields in problems the way the user wrote them: `endpoints[1].upstream` in a file,
//! `--upstream` on the command line.

use crate::error::FieldError;

/// How field paths are written: `endpoints[1].upstream` in a file, `--upstream` for flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldStyle {
    /// `endpoints[INDEX].key`, for `moat.toml`.
    File,
    /// `--key-with-dashes`, for `moat http` / `moat tls` flags.
    Flags,
}

/// Collects problems while one endpoint is validated, naming fields in the chosen style.
pub(crate) struct Problems<'a> {
    pub(crate) style: FieldStyle,
    pub(crate) index: usize,
    pub(crate) list: &'a mut Vec<FieldError>,
}

impl Problems<'_> {
    pub(crate) fn field(&self, key: &str) -> String {
        match self.style {
            FieldStyle::File => format!("endpoints[{}].{key}", self.index),
            FieldStyle::Flags => match key.strip_prefix("timeouts.") {
                Some(timeout) => format!("--{}-timeout", timeout.replace('_', "-")),
                None if key == "crls" => "--crl".to_string(),
                None if key == "ca_hints" => "--no-ca-hints".to_string(),
                None if key == "session_resumption" => "--no-session-resumption".to_string(),
                None => format!("--{}", key.replace('_', "-")),
            },
        }
    }

    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        let path = self.field(key);
        self.list.push(FieldError {
            path,
            message: message.into(),
        });
    }
}
