//! Hostnames reserved for one agent identity: the edge refuses them to every other agent.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::records::{Change, Page, page_of};
use crate::store::Store;

/// One reserved hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    /// Its id, made by moat (`rd_…`).
    pub id: String,
    /// The hostname; reserved at most once.
    pub hostname: String,
    /// The agent identity (certificate name) it is reserved for.
    pub agent: String,
    /// Free text from the operator.
    pub description: String,
    /// Free text (often JSON) from the operator.
    pub metadata: String,
    /// When it was reserved, Unix seconds.
    pub created_at: i64,
    /// Raised by every change.
    pub version: i64,
}

/// The hostname is reserved already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hostname {hostname} is already reserved for agent {agent} ({id})")]
pub struct AlreadyReserved {
    /// The hostname.
    pub hostname: String,
    /// Whose it is.
    pub agent: String,
    /// The reservation that holds it.
    pub id: String,
}

macro_rules! reservation_columns {
    () => {
        "id, hostname, agent, description, metadata, created_at, version"
    };
}

impl ReservationRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<ReservationRow, sqlx::Error> {
        Ok(ReservationRow {
            id: row.try_get("id")?,
            hostname: row.try_get("hostname")?,
            agent: row.try_get("agent")?,
            description: row.try_get("description")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
        })
    }
}

impl Store {
    /// Reserves a hostname (version 1), unless it is reserved already.
    pub async fn reserve(
        &self,
        reservation: &ReservationRow,
    ) -> Result<Result<ReservationRow, AlreadyReserved>, StoreError> {
        let what = || format!("reserving {}", reservation.hostname);
        let inserted = sqlx::query(concat!(
            "INSERT INTO reserved_domains (",
            reservation_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT DO NOTHING RETURNING ",
            reservation_columns!()
        ))
        .bind(&reservation.id)
        .bind(&reservation.hostname)
        .bind(&reservation.agent)
        .bind(&reservation.description)
        .bind(&reservation.metadata)
        .bind(reservation.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        if let Some(row) = inserted {
            return ReservationRow::from_row(&row)
                .map(Ok)
                .map_err(self.query_error(what()));
        }
        match self.reservation_of(&reservation.hostname).await? {
            Some(holder) => Ok(Err(AlreadyReserved {
                hostname: holder.hostname,
                agent: holder.agent,
                id: holder.id,
            })),
            None => Err(StoreError::Exists {
                location: self.location.clone(),
                what: "reserved domain",
                id: reservation.id.clone(),
            }),
        }
    }

    /// The reservation of `hostname`, if there is one.
    pub async fn reservation_of(
        &self,
        hostname: &str,
    ) -> Result<Option<ReservationRow>, StoreError> {
        let what = || format!("reading the reservation of {hostname}");
        let row = sqlx::query(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reserved_domains WHERE hostname = $1"
        ))
        .bind(hostname)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        row.map(|row| ReservationRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(what()))
    }

    /// Up to `limit` reservations with ids after `after`, in id order.
    pub async fn reservations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ReservationRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reserved_domains WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing reserved domains"))?;
        let items = rows
            .iter()
            .map(ReservationRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.query_error("listing reserved domains"))?;
        Ok(page_of(items, limit, |row| &row.id))
    }

    /// Releases the reservation `id` if, when `expected_version` is given, it is still at that
    /// version.
    pub async fn release(
        &self,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<Change<()>, StoreError> {
        self.delete_versioned(
            "reservation",
            "SELECT version FROM reserved_domains WHERE id = $1",
            &["DELETE FROM reserved_domains WHERE id = $1"],
            id,
            expected_version,
        )
        .await
    }
}

/// What the admin API needs of reservations besides pages: one by id.
impl Store {
    /// The reservation `id`, if it exists.
    pub async fn reservation(&self, id: &str) -> Result<Option<ReservationRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reserved_domains WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(format!("reading reservation {id}")))?;
        row.map(|row| ReservationRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(format!("reading reservation {id}")))
    }
}
