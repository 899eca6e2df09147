//! Join tokens: made by an operator, redeemed once by an agent; only each secret's SHA-256 is kept.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::store::Store;

/// One join token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    /// The token's public id.
    pub id: String,
    /// SHA-256 of its secret, lower-case hex; the secret itself is never stored.
    pub secret_sha256: String,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
    /// What the redeeming agent may publish, as the edge writes it (JSON).
    pub grant_json: String,
    /// When it was redeemed, Unix seconds.
    pub used_at: Option<i64>,
    /// The agent that redeemed it.
    pub used_by: Option<String>,
}

/// Why a redemption was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemRefusal {
    /// No token has this id.
    #[error("no join token {id} exists on this edge")]
    Unknown {
        /// The id presented.
        id: String,
    },
    /// The secret does not match the token's.
    #[error("join token {id}: the secret does not match")]
    WrongSecret {
        /// The id presented.
        id: String,
    },
    /// The token was redeemed already (a token works once).
    #[error("join token {id} was used at {used_at} (Unix time); a token works once")]
    Used {
        /// The id presented.
        id: String,
        /// When it was redeemed.
        used_at: i64,
    },
    /// The token's time is up.
    #[error("join token {id} expired at {expires_at} (Unix time)")]
    Expired {
        /// The id presented.
        id: String,
        /// When it expired.
        expires_at: i64,
    },
}

/// The columns of a [`JoinTokenRow`], in a macro so that the queries stay literal strings.
macro_rules! token_columns {
    () => {
        "id, secret_sha256, created_at, expires_at, grant_json, used_at, used_by"
    };
}

impl JoinTokenRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<JoinTokenRow, sqlx::Error> {
        Ok(JoinTokenRow {
            id: row.try_get("id")?,
            secret_sha256: row.try_get("secret_sha256")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            grant_json: row.try_get("grant_json")?,
            used_at: row.try_get("used_at")?,
            used_by: row.try_get("used_by")?,
        })
    }
}

impl Store {
    /// Records a new token; its id must be new.
    pub async fn insert_join_token(&self, token: &JoinTokenRow) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO join_tokens (id, secret_sha256, created_at, expires_at, grant_json, \
             used_at, used_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&token.id)
        .bind(&token.secret_sha256)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(&token.grant_json)
        .bind(token.used_at)
        .bind(&token.used_by)
        .execute(&self.pool)
        .await
        .map_err(self.query_error(format!("recording join token {}", token.id)))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Exists {
                location: self.location.clone(),
                what: "join token",
                id: token.id.clone(),
            });
        }
        Ok(())
    }

    /// Redeems token `id` for `agent` at `now` if `secret_sha256` is its secret's hash, it is
    /// unused and unexpired: one statement, so of two edges redeeming it at the same moment
    /// exactly one succeeds. Returns the token as redeemed.
    pub async fn redeem_join_token(
        &self,
        id: &str,
        secret_sha256: &str,
        agent: &str,
        now: i64,
    ) -> Result<Result<JoinTokenRow, RedeemRefusal>, StoreError> {
        let what = || format!("redeeming join token {id}");
        let redeemed = sqlx::query(concat!(
            "UPDATE join_tokens SET used_at = $1, used_by = $2 ",
            "WHERE id = $3 AND secret_sha256 = $4 AND used_at IS NULL AND expires_at > $1 ",
            "RETURNING ",
            token_columns!()
        ))
        .bind(now)
        .bind(agent)
        .bind(id)
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        if let Some(row) = redeemed {
            return JoinTokenRow::from_row(&row)
                .map(Ok)
                .map_err(self.query_error(what()));
        }
        Ok(Err(self.redemption_refusal(id, secret_sha256).await?))
    }

    /// Why token `id` could not be redeemed with `secret_sha256`: read after the refusing
    /// statement, to say why.
    pub(crate) async fn redemption_refusal(
        &self,
        id: &str,
        secret_sha256: &str,
    ) -> Result<RedeemRefusal, StoreError> {
        let Some(token) = self.join_token(id).await? else {
            return Ok(RedeemRefusal::Unknown { id: id.to_owned() });
        };
        Ok(if token.secret_sha256 != secret_sha256 {
            RedeemRefusal::WrongSecret { id: id.to_owned() }
        } else if let Some(used_at) = token.used_at {
            RedeemRefusal::Used {
                id: id.to_owned(),
                used_at,
            }
        } else {
            RedeemRefusal::Expired {
                id: id.to_owned(),
                expires_at: token.expires_at,
            }
        })
    }

    /// The token `id`, if it exists.
    pub async fn join_token(&self, id: &str) -> Result<Option<JoinTokenRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(format!("reading join token {id}")))?;
        row.map(|row| JoinTokenRow::from_row(&row))
            .transpose()
            .map_err(self.query_error(format!("reading join token {id}")))
    }

    /// Every token, oldest first.
    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing join tokens"))?;
        rows.iter()
            .map(JoinTokenRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(self.query_error("listing join tokens"))
    }
}

/// Unix seconds now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// What the admin API needs of join tokens besides what the edge does with them: pages in id
/// order, and revoking a token before anyone uses it.
impl Store {
    /// Up to `limit` tokens with ids after `after` (from the start when `None`), in id order.
    pub async fn join_token_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<crate::records::Page<JoinTokenRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM join_tokens WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_error("listing join tokens"))?;
        let items = rows
            .iter()
            .map(JoinTokenRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.query_error("listing join tokens"))?;
        Ok(crate::records::page_of(items, limit, |row| &row.id))
    }

    /// Deletes token `id` if no agent has used it: one statement, so a redemption at the same
    /// moment either comes first (and the token stays, as the record of who joined) or finds
    /// it gone. Refused with [`RedeemRefusal::Unknown`] or [`RedeemRefusal::Used`].
    pub async fn revoke_join_token(
        &self,
        id: &str,
    ) -> Result<Result<(), RedeemRefusal>, StoreError> {
        let deleted = sqlx::query("DELETE FROM join_tokens WHERE id = $1 AND used_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(self.query_error(format!("revoking join token {id}")))?;
        if deleted.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        Ok(Err(match self.join_token(id).await? {
            Some(JoinTokenRow {
                used_at: Some(used_at),
                ..
            }) => RedeemRefusal::Used {
                id: id.to_owned(),
                used_at,
            },
            // Gone, or (unused) deleted by another edge in between.
            _ => RedeemRefusal::Unknown { id: id.to_owned() },
        }))
    }
}
