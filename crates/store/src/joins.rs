//! Joining an agent as one transaction: the token redeemed, the name claimed, the token's grant
//! bound to the name, the certificate signed — all of it, or none.

use crate::error::StoreError;
use crate::store::Store;
use crate::tokens::{JoinTokenRow, RedeemRefusal};

/// What a join asks of the store.
#[derive(Debug, Clone, Copy)]
pub struct AgentJoin<'a> {
    /// The token's id.
    pub token_id: &'a str,
    /// SHA-256 of the secret the agent presented, lower-case hex.
    pub secret_sha256: &'a str,
    /// The name the agent's certificate will carry (its CN).
    pub agent: &'a str,
    /// The id of the grant the join records (`ag_…`, made by the caller).
    pub grant_id: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// Why a join was refused before anything was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// The token is unknown, used, expired, or the secret is wrong.
    #[error(transparent)]
    Token(#[from] RedeemRefusal),
    /// Another agent joined under this name: a second one would share its certificate name and
    /// so its grant.
    #[error(
        "agent name {agent:?} is taken by an agent that joined with token {token_id}; ask for another name in the CSR's common name, or leave it empty to have the edge assign one"
    )]
    NameTaken {
        /// The name asked for.
        agent: String,
        /// The token the holder joined with.
        token_id: String,
    },
}

/// An agent that joined: who, with which token, and the serial of its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedAgentRow {
    /// Its name (certificate CN).
    pub name: String,
    /// The token it joined with.
    pub token_id: String,
    /// The grant the join recorded.
    pub grant_id: String,
    /// Its certificate's serial, lower-case hex.
    pub serial: String,
    /// Unix seconds.
    pub joined_at: i64,
}

impl Store {
    /// Joins an agent in one write transaction: redeems the token (unused, unexpired, this
    /// secret), claims `join.agent`'s name, records a grant of the token's hostnames to that
    /// name, then runs `issue` (which signs the certificate and returns it with its serial).
    /// The transaction commits only when `issue` succeeds, so a refused or failed join leaves
    /// the token unspent and nothing recorded. Two edges redeeming one token at once: the
    /// second waits for the first's row lock (PostgreSQL) or write lock (SQLite), then finds
    /// the token used.
    pub async fn join_agent<T, E>(
        &self,
        join: &AgentJoin<'_>,
        issue: impl FnOnce(&JoinTokenRow) -> Result<(T, String), E>,
    ) -> Result<Result<T, JoinRefusal>, E>
    where
        E: From<StoreError>,
    {
        let failed = || self.query_error(format!("joining agent {}", join.agent));
        let mut transaction = self.begin_write().await.map_err(failed())?;
        let redeemed = sqlx::query(concat!(
            "UPDATE join_tokens SET used_at = $1, used_by = $2 ",
            "WHERE id = $3 AND secret_sha256 = $4 AND used_at IS NULL AND expires_at > $1 ",
            "RETURNING id, secret_sha256, created_at, expires_at, grant_json, used_at, used_by"
        ))
        .bind(join.now)
        .bind(join.agent)
        .bind(join.token_id)
        .bind(join.secret_sha256)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(failed())?;
        let Some(redeemed) = redeemed else {
            drop(transaction);
            let refusal = self
                .redemption_refusal(join.token_id, join.secret_sha256)
                .await?;
            return Ok(Err(JoinRefusal::Token(refusal)));
        };
        let token = JoinTokenRow::from_row(&redeemed).map_err(failed())?;
        let claimed = sqlx::query(
            "INSERT INTO joined_agents (name, token_id, grant_id, serial, joined_at) \
             VALUES ($1, $2, $3, '', $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(join.agent)
        .bind(join.token_id)
        .bind(join.grant_id)
        .bind(join.now)
        .execute(&mut *transaction)
        .await
        .map_err(failed())?;
        if claimed.rows_affected() == 0 {
            let holder: Option<String> =
                sqlx::query_scalar("SELECT token_id FROM joined_agents WHERE name = $1")
                    .bind(join.agent)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(failed())?;
            return Ok(Err(JoinRefusal::NameTaken {
                agent: join.agent.to_owned(),
                token_id: holder.unwrap_or_default(),
            }));
        }
        sqlx::query(
            "INSERT INTO agent_grants (id, agents, hostnames, description, metadata, created_at, \
             version) VALUES ($1, $2, $3, $4, '', $5, 1)",
        )
        .bind(join.grant_id)
        .bind(join.agent)
        .bind(&token.grant_json)
        .bind(format!("joined with token {}", join.token_id))
        .bind(join.now)
        .execute(&mut *transaction)
        .await
        .map_err(failed())?;
        let (issued, serial) = issue(&token)?;
        sqlx::query("UPDATE joined_agents SET serial = $1 WHERE name = $2")
            .bind(&serial)
            .bind(join.agent)
            .execute(&mut *transaction)
            .await
            .map_err(failed())?;
        transaction.commit().await.map_err(failed())?;
        Ok(Ok(issued))
    }

    /// The agent that joined as `name`, if one did.
    pub async fn joined_agent(&self, name: &str) -> Result<Option<JoinedAgentRow>, StoreError> {
        use sqlx::Row as _;
        let what = || format!("reading joined agent {name}");
        let row = sqlx::query(
            "SELECT name, token_id, grant_id, serial, joined_at FROM joined_agents WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        row.map(|row| -> Result<JoinedAgentRow, sqlx::Error> {
            Ok(JoinedAgentRow {
                name: row.try_get("name")?,
                token_id: row.try_get("token_id")?,
                grant_id: row.try_get("grant_id")?,
                serial: row.try_get("serial")?,
                joined_at: row.try_get("joined_at")?,
            })
        })
        .transpose()
        .map_err(self.query_error(what()))
    }

    /// Records `value` as the fact `name` unless another edge recorded one first; returns the
    /// value the store holds (this one, or the earlier edge's).
    pub async fn settle_fact(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let what = || format!("recording {name}");
        sqlx::query(
            "INSERT INTO edge_facts (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(self.query_error(what()))?;
        sqlx::query_scalar("SELECT value FROM edge_facts WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_error(what()))
    }
}
