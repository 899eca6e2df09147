//! Why a file could not be inspected, naming the file and the item.

/// Why a file could not be inspected; each message names the file and the item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The file could not be read at all.
    #[error("{path}: cannot read the file: {source}")]
    Read {
        /// The file as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing moat recognises.
    #[error(
        "{path}: no certificate, CSR, CRL or key found; expected PEM (-----BEGIN ...-----) or a single DER object"
    )]
    NothingFound {
        /// The file as given.
        path: String,
    },
    /// A PEM section or DER object is labelled as something but does not parse as it.
    #[error("{path}: item #{item} ({label}) does not parse: {reason}")]
    Unparsable {
        /// The file as given.
        path: String,
        /// 1-based position of the item in the file.
        item: usize,
        /// The PEM label (or what the DER was taken for).
        label: String,
        /// The parser's explanation.
        reason: String,
    },
    /// Serialising the findings to JSON failed (not expected for these plain structures).
    #[error("cannot encode the findings as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
