//! Endpoints the edge's operator defines (Cloudflare's model): the hostname, how it is served, the
//! CAs it trusts and its rules; they win over what an agent asks to publish.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::records::{Change, Page, check_version, page_of};
use crate::store::Store;

/// One edge-defined endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// Its id, made by moat (`ep_…`).
    pub id: String,
    /// The public hostname; one endpoint per hostname.
    pub hostname: String,
    /// `http` or `tls`.
    pub kind: String,
    /// `edge` or `agent`.
    pub terminate_at: String,
    /// Whether several agents may serve it together.
    pub pool: bool,
    /// The CAs (ids) whose client certificates it accepts.
    pub ca_ids: Vec<String>,
    /// Its access rules, as a policy file holds them (TOML).
    pub rules: String,
    /// Free text from the operator.
    pub description: String,
    /// Free text (often JSON) from the operator.
    pub metadata: String,
    /// When it was defined, Unix seconds.
    pub created_at: i64,
    /// Raised by every change.
    pub version: i64,
}

/// Why an endpoint could not be written as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefusal {
    /// Another endpoint has the hostname.
    #[error("hostname {hostname} is already endpoint {endpoint}'s")]
    HostnameTaken {
        /// The hostname.
        hostname: String,
        /// The endpoint that has it.
        endpoint: String,
    },
    /// A CA id names no CA.
    #[error("no certificate authority {ca_id} exists")]
    UnknownCa {
        /// The id.
        ca_id: String,
    },
}

/// The columns of an endpoint (its CAs are another table), literal for the queries.
macro_rules! endpoint_columns {
    () => {
        "id, hostname, kind, terminate_at, pool, rules, description, metadata, created_at, version"
    };
}

impl EndpointRow {
    pub(crate) fn from_row(row: &AnyRow, ca_ids: Vec<String>) -> Result<EndpointRow, sqlx::Error> {
        Ok(EndpointRow {
            id: row.try_get("id")?,
            hostname: row.try_get("hostname")?,
            kind: row.try_get("kind")?,
            terminate_at: row.try_get("terminate_at")?,
            pool: row.try_get::<i64, _>("pool")? != 0,
            ca_ids,
            rules: row.try_get("rules")?,
            description: row.try_get("description")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
        })
    }
}

type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

impl Store {
    /// Defines an endpoint (version 1), with its CAs, in one transaction.
    pub async fn insert_endpoint(
        &self,
        endpoint: &EndpointRow,
    ) -> Result<Result<EndpointRow, EndpointRefusal>, StoreError> {
        let failed = || self.query_error(format!("defining endpoint {}", endpoint.hostname));
        let mut transaction = self.begin_write().await.map_err(failed())?;
        if let Some(refusal) = self
            .endpoint_conflicts(&mut transaction, endpoint, None)
            .await?
        {
            return Ok(Err(refusal));
        }
        let inserted = sqlx::query(concat!(
            "INSERT INTO endpoints (",
            endpoint_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&endpoint.id)
        .bind(&endpoint.hostname)
        .bind(&endpoint.kind)
        .bind(&endpoint.terminate_at)
        .bind(i64::from(endpoint.pool))
        .bind(&endpoint.rules)
        .bind(&endpoint.description)
        .bind(&endpoint.metadata)
        .bind(endpoint.created_at)
        .execute(&mut *transaction)
        .await
        .map_err(failed())?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Exists {
                location: self.location.clone(),
                what: "endpoint",
                id: endpoint.id.clone(),
            });
        }
        set_cas(&mut transaction, &endpoint.id, &endpoint.ca_ids)
            .await
            .map_err(failed())?;
        let row = read_endpoint(&mut transaction, &endpoint.id)
            .await
            .and_then(|row| row.ok_or(sqlx::Error::RowNotFound))
            .map_err(failed())?;
        transaction.commit().await.map_err(failed())?;
        Ok(Ok(row))
    }

    /// Another endpoint with the hostname, or a CA id that names no CA.
    async fn endpoint_conflicts(
        &self,
        transaction: &mut Transaction<'_>,
        endpoint: &EndpointRow,
        replacing: Option<&str>,
    ) -> Result<Option<EndpointRefusal>, StoreError> {
        let failed = || self.query_error(format!("checking endpoint {}", endpoint.hostname));
        let holder: Option<String> =
            sqlx::query_scalar("SELECT id FROM endpoints WHERE hostname = $1")
                .bind(&endpoint.hostname)
                .fetch_optional(&mut **transaction)
                .await
                .map_err(failed())?;
        if let Some(holder) = holder.filter(|holder| Some(holder.as_str()) != replacing) {
            return Ok(Some(EndpointRefusal::HostnameTaken {
                hostname: endpoint.hostname.clone(),
                endpoint: holder,
            }));
        }
        for ca_id in &endpoint.ca_ids {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM certificate_authorities WHERE id = $1")
                    .bind(ca_id)
                    .fetch_optional(&mut **transaction)
                    .await
                    .map_err(failed())?;
            if known.is_none() {
                return Ok(Some(EndpointRefusal::UnknownCa {
                    ca_id: ca_id.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// The endpoint `id`, with its CAs.
    pub async fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let failed = || self.query_error(format!("reading endpoint {id}"));
        let mut transaction = self.begin_read().await.map_err(failed())?;
        read_endpoint(&mut transaction, id).await.map_err(failed())
    }

    /// Up to `limit` endpoints with ids after `after`, in id order, each with its CAs.
    pub async fn endpoints(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<EndpointRow>, StoreError> {
        let failed = || self.query_error("listing endpoints");
        let mut transaction = self.begin_read().await.map_err(failed())?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM endpoints WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *transaction)
                .await
                .map_err(failed())?;
        let mut items = Vec::new();
        for id in &ids {
            if let Some(row) = read_endpoint(&mut transaction, id)
                .await
                .map_err(failed())?
            {
                items.push(row);
            }
        }
        Ok(page_of(items, limit, |row| &row.id))
    }

    /// Replaces what the endpoint `id` is (all but its id and creation) if it is still at
    /// `expected_version`; its CAs are replaced in the same transaction.
    pub async fn update_endpoint(
        &self,
        expected_version: i64,
        endpoint: &EndpointRow,
    ) -> Result<Result<Change<EndpointRow>, EndpointRefusal>, StoreError> {
        let id = &endpoint.id;
        let failed = || self.query_error(format!("changing endpoint {id}"));
        let mut transaction = self.begin_write().await.map_err(failed())?;
        let current = match check_version(
            &mut transaction,
            "SELECT version FROM endpoints WHERE id = $1",
            id,
            Some(expected_version),
        )
        .await
        .map_err(failed())?
        {
            Ok(current) => current,
            Err(stop) => return Ok(Ok(stop)),
        };
        if let Some(refusal) = self
            .endpoint_conflicts(&mut transaction, endpoint, Some(id))
            .await?
        {
            return Ok(Err(refusal));
        }
        let updated = sqlx::query(
            "UPDATE endpoints SET hostname = $1, kind = $2, terminate_at = $3, pool = $4, \
             rules = $5, description = $6, metadata = $7, version = version + 1 \
             WHERE id = $8 AND version = $9",
        )
        .bind(&endpoint.hostname)
        .bind(&endpoint.kind)
        .bind(&endpoint.terminate_at)
        .bind(i64::from(endpoint.pool))
        .bind(&endpoint.rules)
        .bind(&endpoint.description)
        .bind(&endpoint.metadata)
        .bind(id)
        .bind(expected_version)
        .execute(&mut *transaction)
        .await
        .map_err(failed())?;
        if updated.rows_affected() == 0 {
            // Changed by another edge between the read and the write.
            return Ok(Ok(Change::Conflict {
                current_version: current + 1,
            }));
        }
        sqlx::query("DELETE FROM endpoint_cas WHERE endpoint_id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await
            .map_err(failed())?;
        set_cas(&mut transaction, id, &endpoint.ca_ids)
            .await
            .map_err(failed())?;
        let row = read_endpoint(&mut transaction, id)
            .await
            .map_err(failed())?;
        transaction.commit().await.map_err(failed())?;
        Ok(Ok(row.map_or(Change::NotFound, Change::Done)))
    }

    /// Deletes the endpoint (and its CA links) if, when `expected_version` is given, it is still
    /// at that version.
    pub async fn delete_endpoint(
        &self,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<Change<()>, StoreError> {
        // The CA links explicitly, not only by cascade: SQLite enforces foreign keys only when
        // asked.
        self.delete_versioned(
            "endpoint",
            "SELECT version FROM endpoints WHERE id = $1",
            &[
                "DELETE FROM endpoint_cas WHERE endpoint_id = $1",
                "DELETE FROM endpoints WHERE id = $1",
            ],
            id,
            expected_version,
        )
        .await
    }
}

/// Links `endpoint_id` to each CA of `ca_ids`.
async fn set_cas(
    transaction: &mut Transaction<'_>,
    endpoint_id: &str,
    ca_ids: &[String],
) -> Result<(), sqlx::Error> {
    for ca_id in ca_ids {
        sqlx::query(
            "INSERT INTO endpoint_cas (endpoint_id, ca_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(endpoint_id)
        .bind(ca_id)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

/// The endpoint `id` and its CAs, read in `transaction`.
async fn read_endpoint(
    transaction: &mut Transaction<'_>,
    id: &str,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let Some(row) = sqlx::query(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **transaction)
    .await?
    else {
        return Ok(None);
    };
    let ca_ids: Vec<String> =
        sqlx::query_scalar("SELECT ca_id FROM endpoint_cas WHERE endpoint_id = $1 ORDER BY ca_id")
            .bind(id)
            .fetch_all(&mut **transaction)
            .await?;
    EndpointRow::from_row(&row, ca_ids).map(Some)
}
