//! The store's schema: numbered, forward-only migrations, applied at open in one transaction.
//!
//! Written here rather than with sqlx's migrator: SQLite and PostgreSQL need their own DDL for
//! some steps, a store written by a newer moat must stop this one with a clear message, and
//! edges starting together on one PostgreSQL must not both migrate (an advisory lock).

use crate::error::StoreError;
use crate::store::{Backend, Store};

/// One schema step.
struct Migration {
    version: i64,
    description: &'static str,
    sql: Sql,
}

/// A step's SQL: one text where SQLite and PostgreSQL agree, else one for each.
#[allow(dead_code)] // `Dialects` waits for the first step the two do not agree on.
enum Sql {
    Portable(&'static str),
    Dialects {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

/// Every migration, in order; a released one is never edited, only followed by a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "join tokens",
        sql: Sql::Portable(include_str!("../migrations/0001_join_tokens.sql")),
    },
    Migration {
        version: 2,
        description: "certificate authorities and endpoints",
        sql: Sql::Portable(include_str!("../migrations/0002_control_plane.sql")),
    },
    Migration {
        version: 3,
        description: "agent sessions",
        sql: Sql::Portable(include_str!("../migrations/0003_sessions.sql")),
    },
    Migration {
        version: 4,
        description: "reserved domains",
        sql: Sql::Portable(include_str!("../migrations/0004_reserved_domains.sql")),
    },
    Migration {
        version: 5,
        description: "agent grants",
        sql: Sql::Portable(include_str!("../migrations/0005_agent_grants.sql")),
    },
    Migration {
        version: 6,
        description: "joined agents and edge facts",
        sql: Sql::Portable(include_str!("../migrations/0006_joined_agents.sql")),
    },
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// An arbitrary constant naming moat's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK: i64 = 0x6d6f_6174_0001;

/// Brings the store's schema to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) async fn migrate(store: &Store) -> Result<(), StoreError> {
    let mut transaction = store
        .begin_write()
        .await
        .map_err(store.query_error("starting the schema transaction"))?;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(store.query_error("waiting for another edge's schema migration"))?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS moat_schema (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *transaction)
    .await
    .map_err(store.query_error("creating the schema table"))?;
    let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM moat_schema")
        .fetch_one(&mut *transaction)
        .await
        .map_err(store.query_error("reading the schema version"))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            location: store.location.clone(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |source| StoreError::Migration {
            location: store.location.clone(),
            version: migration.version,
            description: migration.description,
            source,
        };
        let sql = match (&migration.sql, store.backend) {
            (Sql::Portable(sql), _) => sql,
            (Sql::Dialects { sqlite, .. }, Backend::Sqlite) => sqlite,
            (Sql::Dialects { postgres, .. }, Backend::Postgres) => postgres,
        };
        sqlx::raw_sql(*sql)
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO moat_schema (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .bind(crate::tokens::unix_now())
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
    }
    transaction
        .commit()
        .await
        .map_err(store.query_error("committing the schema"))?;
    Ok(())
}
