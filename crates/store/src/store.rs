//! Opening a store: SQLite by file path, PostgreSQL by URL, the schema brought up to date.

use std::sync::Once;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::{Any, Pool};

use crate::error::StoreError;

/// Which database holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file: one edge, nothing to install.
    Sqlite,
    /// A PostgreSQL database: several edges share it.
    Postgres,
}

/// The control-plane store of one edge (or of several, on PostgreSQL); cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool<Any>,
    pub(crate) backend: Backend,
    /// For messages: the file, or the URL without its password.
    pub(crate) location: String,
    /// PostgreSQL's URL, password included, for the notification listener's own connection.
    pub(crate) connect_url: Option<ConnectUrl>,
}

/// A database URL that may hold a password: never printed.
#[derive(Clone)]
pub(crate) struct ConnectUrl(String);

impl ConnectUrl {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&without_password(&self.0))
    }
}

/// How long a statement waits for a connection from the pool before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens the store at `location` and brings its schema up to date: a `postgres://` or
    /// `postgresql://` URL, or else the path of a SQLite file (created if missing).
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url, shown) =
            if location.starts_with("postgres://") || location.starts_with("postgresql://") {
                (
                    Backend::Postgres,
                    location.to_owned(),
                    without_password(location),
                )
            } else {
                (
                    Backend::Sqlite,
                    format!("sqlite://{location}?mode=rwc"),
                    location.to_owned(),
                )
            };
        if backend == Backend::Sqlite {
            create_private(location).map_err(|source| StoreError::Open {
                location: shown.clone(),
                source: sqlx::Error::Io(source),
            })?;
        }
        let mut options = PoolOptions::<Any>::new().acquire_timeout(ACQUIRE_TIMEOUT);
        if backend == Backend::Sqlite {
            // WAL lets readers go on while one writer commits; a writer waits up to 5 s for
            // another instead of failing at once.
            options = options.max_connections(4).after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA foreign_keys = ON;",
                    )
                    .execute(connection)
                    .await
                    .map(|_| ())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                location: shown.clone(),
                source,
            })?;
        let store = Store {
            pool,
            backend,
            location: shown,
            connect_url: (backend == Backend::Postgres).then(|| ConnectUrl(location.to_owned())),
        };
        crate::schema::migrate(&store).await?;
        Ok(store)
    }

    /// A transaction that will write after reading. SQLite's default transaction takes the
    /// write lock only at its first write, and a second such transaction then fails at once
    /// ("database is locked") instead of waiting; `BEGIN IMMEDIATE` takes it first and waits for
    /// it. PostgreSQL locks rows as they are written, and its constraints (unique hostnames,
    /// foreign keys) refuse what a concurrent writer would make inconsistent.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A transaction that only reads, seeing one state of the store.
    pub(crate) async fn begin_read(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        self.pool.begin().await
    }

    /// The SQLite file, or the PostgreSQL URL without its password: for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The error of a failed query doing `what`.
    pub(crate) fn query_error(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        let what = what.into();
        move |source| StoreError::Query {
            location: self.location.clone(),
            what,
            source,
        }
    }
}

/// Creates the SQLite file `path` readable by its owner only (0600) if it does not exist:
/// SQLite would make it with the process's umask, and the store holds grants and token hashes.
/// Its `-wal` and `-shm` files take the database file's mode.
fn create_private(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// `url` with any password (`user:password@`, `?password=`) replaced by `***`, for messages.
fn without_password(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            (url, format!("?{}", query.join("&")))
        }
        None => (url, String::new()),
    };
    credentials_hidden(url) + &query
}

/// `url` (without its query) with the password of `user:password@` replaced by `***`.
fn credentials_hidden(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_never_reach_messages() {
        for (url, shown) in [
            (
                "postgres://moat:s3cret@db:5432/moat",
                "postgres://moat:***@db:5432/moat",
            ),
            ("postgres://moat@db/moat", "postgres://moat@db/moat"),
            ("postgresql://db/moat", "postgresql://db/moat"),
            (
                "postgres://db/moat?sslmode=disable&password=s3cret",
                "postgres://db/moat?sslmode=disable&password=***",
            ),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }
}
