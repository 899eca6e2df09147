//! Why the admin listener could not start, or the admin client could not ask; each message
//! names what to fix.

use std::net::SocketAddr;

/// A failure to set up or reach the admin API (a refusal by the API itself is a JSON answer,
/// not this).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The admin listener's own certificate or key is unusable.
    #[error(
        "the admin listener's certificate: {reason}; give its PEM certificate chain (leaf first) and the PEM private key"
    )]
    ServerCertificate {
        /// What is wrong.
        reason: String,
    },
    /// The admin CA bundle is unusable (e.g. it holds a certificate that is not a CA).
    #[error("--admin-cas: {0}")]
    AdminCas(#[source] moat_trust::TrustError),
    /// rustls refused the configuration.
    #[error("cannot set up TLS for {what}: {reason}")]
    Tls {
        /// The listener or the client.
        what: &'static str,
        /// rustls' explanation.
        reason: String,
    },
    /// The admin address cannot be listened on.
    #[error(
        "cannot listen for the admin API on {address}: {source}; pick a free address with --admin-listen"
    )]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The API's URL is not `https://HOST:PORT`.
    #[error(
        "admin API URL {url:?} {problem}; write it as https://HOST:PORT, e.g. https://127.0.0.1:9443"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The client's certificate, key or server CA is unusable.
    #[error("the admin client's {what}: {reason}")]
    ClientCredentials {
        /// `certificate`, `key` or `server CA`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The request did not get an answer: no connection, a refused handshake, a broken
    /// connection or no answer in time.
    #[error("{method} {url}: {reason}")]
    Request {
        /// The method.
        method: String,
        /// The full URL.
        url: String,
        /// What failed, with its causes (a refused handshake names the TLS alert).
        reason: String,
    },
    /// The API answered with a body that is not JSON.
    #[error("{method} {url}: the answer ({status}) is not JSON: {reason}")]
    BadAnswer {
        /// The method.
        method: String,
        /// The full URL.
        url: String,
        /// The answer's status.
        status: http::StatusCode,
        /// The parser's explanation.
        reason: String,
    },
}

/// `error` and its causes, each once, joined by `: `.
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}
