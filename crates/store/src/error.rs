//! Why the store could not do what was asked; each message names the store and the fix.

/// A failure of the store itself (a refused redemption is a [`crate::RedeemRefusal`], not this).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error(
        "{location}: cannot open the store: {source}; check the path or URL, that the database runs, and the credentials"
    )]
    Open {
        /// The SQLite file or the PostgreSQL URL, without its password.
        location: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The store's schema is newer than this moat knows: a newer moat wrote it.
    #[error(
        "{location}: the store's schema is version {found}, newer than this moat knows ({known}); run the moat that upgraded it (or a newer one), or restore the backup made before the upgrade"
    )]
    SchemaTooNew {
        /// The store.
        location: String,
        /// The version the store records.
        found: i64,
        /// The newest version this binary has.
        known: i64,
    },
    /// A schema migration failed; its transaction left the store as it was.
    #[error(
        "{location}: schema migration {version} ({description}) failed: {source}; the store is unchanged, fix the cause and start again"
    )]
    Migration {
        /// The store.
        location: String,
        /// The migration's version.
        version: i64,
        /// What it does.
        description: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("{location}: {what} failed: {source}")]
    Query {
        /// The store.
        location: String,
        /// What was being done, e.g. "redeeming join token abc".
        what: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A record with this id exists already.
    #[error("{location}: {what} {id} exists already")]
    Exists {
        /// The store.
        location: String,
        /// The kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
}
