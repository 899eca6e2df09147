//! What the API asks of the edge that runs it: making join tokens, and hearing of every change.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What the API needs from the edge that runs it (the edge implements it). The API writes the
/// store itself; only what needs the edge's own secrets (its agent CA, for a join token's pin)
/// or its running state goes through here.
pub trait EdgeHooks: Send + Sync + 'static {
    /// Makes a join token and records it in the store; returns the token's text (shown once) and
    /// its row.
    fn issue_join_token(
        &self,
        request: TokenRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken, HookError>> + Send + '_>>;

    /// Called after every committed change so the edges re-read the store now rather than at
    /// their next poll.
    fn changed(&self);
}

/// A join token as an admin asked for it, checked: the globs are valid hostname globs and the
/// time to live is above zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Hostname globs the joining agent may publish, lower-case (`*.a.example.com`).
    pub grant: Vec<String>,
    /// How long the token works from now.
    pub ttl: Duration,
    /// Free text from the admin, for the edge's log (the store keeps no description of tokens).
    pub description: String,
}

/// A token the edge made: its text, which holds the secret and is shown to the admin once, and
/// the row the store keeps (the secret's hash only).
#[derive(Clone)]
pub struct IssuedToken {
    /// The token's text (`moat-join-1.…`), secret.
    pub token: String,
    /// The row the edge recorded.
    pub row: moat_store::JoinTokenRow,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"(redacted)")
            .field("row", &self.row.id)
            .finish()
    }
}

/// Why the edge could not do what a hook asked; the message goes to the admin as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The request cannot be done as asked (HTTP 400), e.g. this edge makes no join tokens
    /// because its agents are trusted by `--agent-cas`.
    #[error("{message}")]
    Refused {
        /// The request's field at fault (`grant`, `ttl`), or `None` for the request as a whole.
        field: Option<&'static str>,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The edge failed (HTTP 500), e.g. it could not write the store.
    #[error("{message}")]
    Failed {
        /// What failed.
        message: String,
    },
}
