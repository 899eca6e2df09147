//! Agent sessions under leases: which edge serves which agent, renewed while the edge lives.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::store::Store;

/// One agent connected to one edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session's id, made by the edge that holds it.
    pub id: String,
    /// The agent's identity (its certificate's name).
    pub agent: String,
    /// The edge that holds the connection.
    pub edge: String,
    /// When the agent connected, Unix seconds.
    pub started_at: i64,
    /// The last renewal, Unix seconds.
    pub heartbeat_at: i64,
    /// The session counts as live until then, Unix seconds.
    pub lease_until: i64,
}

macro_rules! session_columns {
    () => {
        "id, agent, edge, started_at, heartbeat_at, lease_until"
    };
}

impl SessionRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<SessionRow, sqlx::Error> {
        Ok(SessionRow {
            id: row.try_get("id")?,
            agent: row.try_get("agent")?,
            edge: row.try_get("edge")?,
            started_at: row.try_get("started_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
            lease_until: row.try_get("lease_until")?,
        })
    }
}

impl Store {
    /// Records that `edge` now serves `agent` in session `id`, live for `lease` seconds.
    pub async fn open_session(
        &self,
        id: &str,
        agent: &str,
        edge: &str,
        now: i64,
        lease: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tunnel_sessions (id, agent, edge, started_at, heartbeat_at, lease_until) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id)
        .bind(agent)
        .bind(edge)
        .bind(now)
        .bind(now + lease)
        .execute(&self.pool)
        .await
        .map_err(self.query_error(format!("opening session {id} of {agent}")))?;
        Ok(())
    }

    /// Extends session `id`'s lease; `false` when it is gone (an operator disconnected the
    /// agent, or the lease had lapsed and was swept): the edge then closes the agent's
    /// connection.
    pub async fn renew_session(
        &self,
        id: &str,
        edge: &str,
        now: i64,
        lease: i64,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE tunnel_sessions SET heartbeat_at = $1, lease_until = $2 \
             WHERE id = $3 AND edge = $4 AND lease_until > $1",
        )
        .bind(now)
        .bind(now + lease)
        .bind(id)
        .bind(edge)
        .execute(&self.pool)
        .await
        .map_err(self.query_error(format!("renewing session {id}")))?;
        Ok(renewed.rows_affected() == 1)
    }

    /// The sessions whose lease runs past `now`, by agent then edge.
    pub async fn live_sessions(&self, now: i64) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM tunnel_sessions WHERE lease_until > $1 ORDER BY agent, edge, id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing sessions"))?;
        rows.iter()
            .map(SessionRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(self.query_error("listing sessions"))
    }

    /// Ends session `id` (the agent left, or an operator disconnects it); `false` if it was
    /// not there.
    pub async fn end_session(&self, id: &str) -> Result<bool, StoreError> {
        let ended = sqlx::query("DELETE FROM tunnel_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.query_error(format!("ending session {id}")))?;
        Ok(ended.rows_affected() == 1)
    }

    /// Removes the sessions whose lease lapsed by `now` (their edge stopped renewing);
    /// returns how many.
    pub async fn sweep_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let swept = sqlx::query("DELETE FROM tunnel_sessions WHERE lease_until <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.query_error("removing lapsed sessions"))?;
        Ok(swept.rows_affected())
    }
}

/// What the admin API needs of sessions: the live ones in pages of ids, and one by id.
impl Store {
    /// Up to `limit` sessions whose lease runs past `now`, with ids after `after`, in id order.
    pub async fn live_session_page(
        &self,
        now: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<crate::records::Page<SessionRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM tunnel_sessions WHERE lease_until > $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(now)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing sessions"))?;
        let items = rows
            .iter()
            .map(SessionRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.query_error("listing sessions"))?;
        Ok(crate::records::page_of(items, limit, |row| &row.id))
    }

    /// Session `id` if its lease runs past `now`.
    pub async fn live_session(&self, id: &str, now: i64) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM tunnel_sessions WHERE id = $1 AND lease_until > $2"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(format!("reading session {id}")))?;
        row.map(|row| SessionRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(format!("reading session {id}")))
    }
}
