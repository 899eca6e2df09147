//! The store on both backends: the schema at open, join tokens redeemed once (also by two edges
//! at the same moment), records that outlive a restart, and a newer schema refused.

mod support;

use moat_store::{Backend, RedeemRefusal, SCHEMA_VERSION, Store, StoreError};
use support::PgCluster;

const HOUR: i64 = 3600;

fn token(id: &str, secret: &str, expires_at: i64) -> moat_store::JoinTokenRow {
    moat_store::JoinTokenRow {
        id: id.to_owned(),
        secret_sha256: secret.to_owned(),
        created_at: 1_000,
        expires_at,
        grant_json: r#"["*.tunnel.test"]"#.to_owned(),
        used_at: None,
        used_by: None,
    }
}

/// Everything the join tokens must do, on the store at `location`.
async fn tokens_are_kept_and_redeemed_once(location: &str, backend: Backend) {
    let now = 10_000;
    let store = Store::open(location).await.unwrap();
    assert_eq!(store.backend(), backend);
    assert!(store.join_tokens().await.unwrap().is_empty());
    store
        .insert_join_token(&token("tok-a", "aaaa", now + HOUR))
        .await
        .unwrap();
    store
        .insert_join_token(&token("tok-old", "bbbb", now - 1))
        .await
        .unwrap();
    let again = store
        .insert_join_token(&token("tok-a", "cccc", now + HOUR))
        .await;
    assert!(matches!(again, Err(StoreError::Exists { .. })), "{again:?}");

    let refusal = |outcome: Result<_, RedeemRefusal>| outcome.unwrap_err();
    assert_eq!(
        refusal(
            store
                .redeem_join_token("tok-a", "wrong", "alice", now)
                .await
                .unwrap()
        ),
        RedeemRefusal::WrongSecret { id: "tok-a".into() }
    );
    assert_eq!(
        refusal(
            store
                .redeem_join_token("nope", "aaaa", "alice", now)
                .await
                .unwrap()
        ),
        RedeemRefusal::Unknown { id: "nope".into() }
    );
    assert_eq!(
        refusal(
            store
                .redeem_join_token("tok-old", "bbbb", "alice", now)
                .await
                .unwrap()
        ),
        RedeemRefusal::Expired {
            id: "tok-old".into(),
            expires_at: now - 1
        }
    );

    // Two edges (two stores, each with its own connections) get the token at the same moment,
    // four times each: exactly one redemption succeeds.
    let other_edge = Store::open(location).await.unwrap();
    let mut attempts = Vec::new();
    for attempt in 0..8 {
        let store = if attempt % 2 == 0 {
            store.clone()
        } else {
            other_edge.clone()
        };
        attempts.push(tokio::spawn(async move {
            store
                .redeem_join_token("tok-a", "aaaa", &format!("agent-{attempt}"), now)
                .await
                .unwrap()
        }));
    }
    let mut redeemed = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(row) => redeemed.push(row),
            Err(refusal) => assert!(
                matches!(refusal, RedeemRefusal::Used { used_at, .. } if used_at == now),
                "{refusal:?}"
            ),
        }
    }
    assert_eq!(redeemed.len(), 1, "exactly one redemption: {redeemed:?}");
    let winner = redeemed[0].used_by.clone().unwrap();
    drop((store, other_edge));

    // Opened again (an edge restarted): the token is still used, by the same agent.
    let reopened = Store::open(location).await.unwrap();
    let kept = reopened.join_token("tok-a").await.unwrap().unwrap();
    assert_eq!(kept.used_at, Some(now));
    assert_eq!(kept.used_by.as_deref(), Some(winner.as_str()));
    assert_eq!(reopened.join_tokens().await.unwrap().len(), 2);
    assert!(matches!(
        reopened
            .redeem_join_token("tok-a", "aaaa", "mallory", now)
            .await
            .unwrap(),
        Err(RedeemRefusal::Used { .. })
    ));
}

/// A store whose schema a newer moat wrote is refused at open, naming both versions.
async fn a_newer_schema_is_refused(location: &str) {
    Store::open(location).await.unwrap();
    sqlx::any::install_default_drivers();
    let url = if location.starts_with("postgres") {
        location.to_owned()
    } else {
        format!("sqlite://{location}")
    };
    let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("INSERT INTO moat_schema (version, description, applied_at) VALUES ($1, 'from the future', 0)")
        .bind(SCHEMA_VERSION + 1)
        .execute(&mut connection)
        .await
        .unwrap();
    let refused = Store::open(location).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::SchemaTooNew { found, known, .. } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION)
    );
    let message = refused.to_string();
    assert!(
        message.contains(&format!("version {}", SCHEMA_VERSION + 1))
            && message.contains("newer than this moat knows"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_tokens_and_redeems_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    tokens_are_kept_and_redeemed_once(path.to_str().unwrap(), Backend::Sqlite).await;
    let newer = dir.path().join("newer.db");
    a_newer_schema_is_refused(newer.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_tokens_and_redeems_each_once_across_edges() {
    let cluster = PgCluster::start();
    tokens_are_kept_and_redeemed_once(&cluster.url(), Backend::Postgres).await;
    let newer = PgCluster::start();
    a_newer_schema_is_refused(&newer.url()).await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_without_its_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = Store::open(&format!("postgres://moat:s3cret@127.0.0.1:{port}/moat"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("moat:***@127.0.0.1"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}
