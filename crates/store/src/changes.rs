//! Change notifications between edges sharing a store: a hint to read again now, never the
//! change itself, so a missed one costs only the wait for the next periodic read.

use sqlx::postgres::PgListener;

use crate::error::StoreError;
use crate::store::{Backend, Store};

/// The PostgreSQL channel edges notify and listen on.
const CHANNEL: &str = "moat_changes";

/// Notifications that the store changed, from any edge (PostgreSQL); on SQLite only this
/// process writes, and it tells itself, so nothing arrives here.
pub struct ChangeFeed {
    listener: Option<PgListener>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

impl ChangeFeed {
    /// Waits for the next notification. A lost connection is re-made by the listener (and
    /// what was missed meanwhile is what the periodic read is for); `Err` only when it cannot
    /// be. On SQLite it never resolves.
    pub async fn changed(&mut self) -> Result<(), StoreError> {
        match &mut self.listener {
            Some(listener) => {
                listener
                    .recv()
                    .await
                    .map(|_| ())
                    .map_err(|source| StoreError::Query {
                        location: "the change notifications".to_owned(),
                        what: "waiting for a notification".to_owned(),
                        source,
                    })
            }
            None => std::future::pending().await,
        }
    }
}

impl Store {
    /// Tells every edge listening that the store changed (PostgreSQL `NOTIFY`; nothing on
    /// SQLite, whose only edge is this process).
    pub async fn notify_changed(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&self.pool)
            .await
            .map_err(self.query_error("notifying the other edges"))?;
        Ok(())
    }

    /// Starts listening for other edges' notifications.
    pub async fn change_feed(&self) -> Result<ChangeFeed, StoreError> {
        let Some(url) = &self.connect_url else {
            return Ok(ChangeFeed { listener: None });
        };
        let failed = |source| StoreError::Open {
            location: self.location.clone(),
            source,
        };
        let mut listener = PgListener::connect(url.expose()).await.map_err(failed)?;
        listener.listen(CHANNEL).await.map_err(failed)?;
        Ok(ChangeFeed {
            listener: Some(listener),
        })
    }
}
