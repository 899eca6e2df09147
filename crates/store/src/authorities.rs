//! Certificate authorities an operator uploads for endpoints to trust: the PEM and what the API
//! shows of it, changed only against the version the client last read.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::records::{Change, Page, check_version, page_of};
use crate::store::Store;

/// One CA as the store keeps it. Checking that `ca_pem` is a CA is the caller's (the API uses
/// the gateway's own check, so both refuse a non-CA with the same words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRow {
    /// Its id, made by moat (`ca_…`).
    pub id: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Its subject's common name, for lists.
    pub subject_common_name: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity, Unix seconds.
    pub not_after: i64,
    /// Free text from the operator.
    pub description: String,
    /// Free text (often JSON) from the operator.
    pub metadata: String,
    /// When it was added, Unix seconds.
    pub created_at: i64,
    /// Raised by every change; a change names the version it read.
    pub version: i64,
}

/// The columns of a [`CaRow`], in a macro so that the queries stay literal strings.
macro_rules! ca_columns {
    () => {
        "id, ca_pem, subject_common_name, not_before, not_after, description, metadata, \
         created_at, version"
    };
}

impl CaRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<CaRow, sqlx::Error> {
        Ok(CaRow {
            id: row.try_get("id")?,
            ca_pem: row.try_get("ca_pem")?,
            subject_common_name: row.try_get("subject_common_name")?,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            description: row.try_get("description")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
        })
    }
}

impl Store {
    /// Adds a CA; its id must be new. Its version starts at 1.
    pub async fn insert_ca(&self, ca: &CaRow) -> Result<CaRow, StoreError> {
        let what = || format!("adding CA {}", ca.id);
        let inserted = sqlx::query(concat!(
            "INSERT INTO certificate_authorities (",
            ca_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) ON CONFLICT (id) DO NOTHING RETURNING ",
            ca_columns!()
        ))
        .bind(&ca.id)
        .bind(&ca.ca_pem)
        .bind(&ca.subject_common_name)
        .bind(ca.not_before)
        .bind(ca.not_after)
        .bind(&ca.description)
        .bind(&ca.metadata)
        .bind(ca.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        match inserted {
            Some(row) => CaRow::from_row(&row).map_err(self.query_error(what())),
            None => Err(StoreError::Exists {
                location: self.location.clone(),
                what: "certificate authority",
                id: ca.id.clone(),
            }),
        }
    }

    /// The CA `id`, if it exists.
    pub async fn ca(&self, id: &str) -> Result<Option<CaRow>, StoreError> {
        let what = || format!("reading CA {id}");
        let row = sqlx::query(concat!(
            "SELECT ",
            ca_columns!(),
            " FROM certificate_authorities WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        row.map(|row| CaRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(what()))
    }

    /// Up to `limit` CAs with ids after `after` (from the start when `None`), in id order.
    pub async fn cas(&self, after: Option<&str>, limit: u32) -> Result<Page<CaRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ca_columns!(),
            " FROM certificate_authorities WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing CAs"))?;
        let items = rows
            .iter()
            .map(CaRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.query_error("listing CAs"))?;
        Ok(page_of(items, limit, |row| &row.id))
    }

    /// Sets the CA's description and metadata if it is still at `expected_version`.
    pub async fn update_ca(
        &self,
        id: &str,
        expected_version: i64,
        description: &str,
        metadata: &str,
    ) -> Result<Change<CaRow>, StoreError> {
        let what = || format!("changing CA {id}");
        let updated = sqlx::query(concat!(
            "UPDATE certificate_authorities SET description = $1, metadata = $2, ",
            "version = version + 1 WHERE id = $3 AND version = $4 RETURNING ",
            ca_columns!()
        ))
        .bind(description)
        .bind(metadata)
        .bind(id)
        .bind(expected_version)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        if let Some(row) = updated {
            return CaRow::from_row(&row)
                .map(Change::Done)
                .map_err(self.query_error(what()));
        }
        Ok(match self.ca(id).await? {
            Some(current) => Change::Conflict {
                current_version: current.version,
            },
            None => Change::NotFound,
        })
    }

    /// Deletes the CA if no endpoint trusts it and, when `expected_version` is given, it is
    /// still at that version. One transaction: an endpoint cannot take the CA up meanwhile.
    pub async fn delete_ca(
        &self,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<Change<()>, StoreError> {
        let failed = || self.query_error(format!("deleting CA {id}"));
        let mut transaction = self.begin_write().await.map_err(failed())?;
        let current = match check_version(
            &mut transaction,
            "SELECT version FROM certificate_authorities WHERE id = $1",
            id,
            expected_version,
        )
        .await
        .map_err(failed())?
        {
            Ok(current) => current,
            Err(stop) => return Ok(stop),
        };
        let endpoints: Vec<String> = sqlx::query_scalar(
            "SELECT endpoint_id FROM endpoint_cas WHERE ca_id = $1 ORDER BY endpoint_id",
        )
        .bind(id)
        .fetch_all(&mut *transaction)
        .await
        .map_err(failed())?;
        if !endpoints.is_empty() {
            return Ok(Change::InUse { endpoints });
        }
        let deleted =
            sqlx::query("DELETE FROM certificate_authorities WHERE id = $1 AND version = $2")
                .bind(id)
                .bind(current)
                .execute(&mut *transaction)
                .await
                .map_err(failed())?;
        transaction.commit().await.map_err(failed())?;
        Ok(if deleted.rows_affected() == 1 {
            Change::Done(())
        } else {
            Change::Conflict {
                current_version: current,
            }
        })
    }
}
