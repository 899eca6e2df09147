//! Agent grants: which agents (a glob on their certificate name) may publish which hostnames.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::records::{Change, Page, page_of};
use crate::store::Store;

/// One grant. The edge parses and checks `agents` and `hostnames`; the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// Its id, made by moat (`ag_…`).
    pub id: String,
    /// A glob over agents' certificate names, e.g. `ci-*`.
    pub agents: String,
    /// The hostname globs, as a JSON array.
    pub hostnames: String,
    /// Free text from the operator.
    pub description: String,
    /// Free text (often JSON) from the operator.
    pub metadata: String,
    /// When it was granted, Unix seconds.
    pub created_at: i64,
    /// Raised by every change.
    pub version: i64,
}

macro_rules! grant_columns {
    () => {
        "id, agents, hostnames, description, metadata, created_at, version"
    };
}

impl GrantRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<GrantRow, sqlx::Error> {
        Ok(GrantRow {
            id: row.try_get("id")?,
            agents: row.try_get("agents")?,
            hostnames: row.try_get("hostnames")?,
            description: row.try_get("description")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            version: row.try_get("version")?,
        })
    }
}

impl Store {
    /// Records a grant (version 1); its id must be new.
    pub async fn insert_grant(&self, grant: &GrantRow) -> Result<GrantRow, StoreError> {
        let what = || format!("recording grant {}", grant.id);
        let inserted = sqlx::query(concat!(
            "INSERT INTO agent_grants (",
            grant_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (id) DO NOTHING RETURNING ",
            grant_columns!()
        ))
        .bind(&grant.id)
        .bind(&grant.agents)
        .bind(&grant.hostnames)
        .bind(&grant.description)
        .bind(&grant.metadata)
        .bind(grant.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        match inserted {
            Some(row) => GrantRow::from_row(&row).map_err(self.query_error(what())),
            None => Err(StoreError::Exists {
                location: self.location.clone(),
                what: "agent grant",
                id: grant.id.clone(),
            }),
        }
    }

    /// Up to `limit` grants with ids after `after`, in id order.
    pub async fn grants(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<GrantRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM agent_grants WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing agent grants"))?;
        let items = rows
            .iter()
            .map(GrantRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.query_error("listing agent grants"))?;
        Ok(page_of(items, limit, |row| &row.id))
    }

    /// Revokes the grant `id` if, when `expected_version` is given, it is still at that version.
    pub async fn delete_grant(
        &self,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<Change<()>, StoreError> {
        self.delete_versioned(
            "agent grant",
            "SELECT version FROM agent_grants WHERE id = $1",
            &["DELETE FROM agent_grants WHERE id = $1"],
            id,
            expected_version,
        )
        .await
    }
}

/// What the admin API needs of grants besides pages: one by id.
impl Store {
    /// The grant `id`, if it exists.
    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM agent_grants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(format!("reading agent grant {id}")))?;
        row.map(|row| GrantRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(format!("reading agent grant {id}")))
    }
}
