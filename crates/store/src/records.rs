//! What every record an operator manages shares: lists in pages of ids, and changes made only
//! against the version the client read.

use crate::error::StoreError;
use crate::store::Store;

/// One page of a list, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The records.
    pub items: Vec<T>,
    /// The id to list after for the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// The outcome of a change made against a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Made; the record as it is now.
    Done(T),
    /// No record has this id.
    NotFound,
    /// Someone changed it since the version the client read (HTTP 412 / 409).
    Conflict {
        /// The version it has now.
        current_version: i64,
    },
    /// Endpoints still trust it (a CA only).
    InUse {
        /// Their ids.
        endpoints: Vec<String>,
    },
}

/// Reads a record's version in `transaction` with `select_version` (`SELECT version FROM … WHERE
/// id = $1`) and checks it against `expected` (any version when `None`): `Ok(version)` to go
/// on, or the [`Change`] that stops the change.
pub(crate) async fn check_version<T>(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    select_version: &'static str,
    id: &str,
    expected: Option<i64>,
) -> Result<Result<i64, Change<T>>, sqlx::Error> {
    let current: Option<i64> = sqlx::query_scalar(select_version)
        .bind(id)
        .fetch_optional(&mut **transaction)
        .await?;
    Ok(match current {
        None => Err(Change::NotFound),
        Some(current) if expected.is_some_and(|expected| expected != current) => {
            Err(Change::Conflict {
                current_version: current,
            })
        }
        Some(current) => Ok(current),
    })
}

/// A page of `limit` from `items`, which holds up to `limit + 1` records in id order (the one
/// more tells that another page follows).
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_after = more
        .then(|| items.last().map(|item| id(item).to_owned()))
        .flatten();
    Page { items, next_after }
}

impl Store {
    /// Deletes record `id` with `deletes` (each `DELETE … WHERE … = $1`, in order) in one
    /// transaction, if `select_version` finds it and, when `expected` is given, at that version.
    pub(crate) async fn delete_versioned(
        &self,
        what: &str,
        select_version: &'static str,
        deletes: &[&'static str],
        id: &str,
        expected: Option<i64>,
    ) -> Result<Change<()>, StoreError> {
        let failed = || self.query_error(format!("deleting {what} {id}"));
        let mut transaction = self.begin_write().await.map_err(failed())?;
        if let Err(stop) = check_version(&mut transaction, select_version, id, expected)
            .await
            .map_err(failed())?
        {
            return Ok(stop);
        }
        for delete in deletes {
            sqlx::query(*delete)
                .bind(id)
                .execute(&mut *transaction)
                .await
                .map_err(failed())?;
        }
        transaction.commit().await.map_err(failed())?;
        Ok(Change::Done(()))
    }
}
