//! Why a configuration was refused: unreadable file, TOML syntax, or a list of field problems.

use std::fmt;
use std::path::PathBuf;

/// One problem with one field, e.g. `endpoints[1].upstream` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is, e.g. `endpoints[1].upstream` (or `upstream` for command-line flags).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be used; nothing is applied when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{path}: cannot read the {what}: {source}; check the path and its permissions", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file is: "configuration file" or "policy file".
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// The file name (or "command line").
        origin: String,
        /// The TOML parser's description, with line and column.
        message: String,
    },
    /// One or more fields are wrong; every problem is listed, one per line.
    #[error("{}", render_problems(origin, problems))]
    Invalid {
        /// The file name (or the command that was given flags).
        origin: String,
        /// Every problem found, in field order.
        problems: Vec<FieldError>,
    },
    /// `moat start NAME` named an endpoint the file does not have.
    #[error(
        "{origin}: no endpoint named {name:?}; the file has {}",
        known_names(known)
    )]
    UnknownEndpoint {
        /// The file name.
        origin: String,
        /// The name asked for.
        name: String,
        /// The names the file defines.
        known: Vec<String>,
    },
}

fn render_problems(origin: &str, problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|problem| format!("{origin}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        "no endpoints".to_string()
    } else {
        known
            .iter()
            .map(|name| format!("{name:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
