//! The store on both backends: the schema at open, join tokens redeemed once (also by two edges
//! at the same moment), records that outlive a restart, CAs changed only against the version
//! read, and a newer schema refused.

mod support;

use moat_store::{
    AlreadyReserved, Backend, CaRow, Change, EndpointRefusal, EndpointRow, GrantRow, RedeemRefusal,
    ReservationRow, SCHEMA_VERSION, Store, StoreError,
};
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

    for (id, secret, refusal) in [
        (
            "tok-a",
            "wrong",
            RedeemRefusal::WrongSecret { id: "tok-a".into() },
        ),
        ("nope", "aaaa", RedeemRefusal::Unknown { id: "nope".into() }),
        (
            "tok-old",
            "bbbb",
            RedeemRefusal::Expired {
                id: "tok-old".into(),
                expires_at: now - 1,
            },
        ),
    ] {
        let outcome = store.redeem_join_token(id, secret, "alice", now).await;
        assert_eq!(outcome.unwrap(), Err(refusal), "{id}");
    }

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

/// A connection of the test's own to the store at `location`, for what no API writes yet.
async fn raw_connection(location: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = if location.starts_with("postgres") {
        location.to_owned()
    } else {
        format!("sqlite://{location}")
    };
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap()
}

fn ca(id: &str) -> CaRow {
    CaRow {
        id: id.to_owned(),
        ca_pem: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_owned(),
        subject_common_name: format!("CA {id}"),
        not_before: 0,
        not_after: 2_000_000_000,
        description: String::new(),
        metadata: String::new(),
        created_at: 1_000,
        version: 0,
    }
}

/// CAs: listed in pages, changed only against the version read (one of two racing changes
/// wins), and not deleted while an endpoint trusts them.
async fn cas_change_only_against_the_version_read(location: &str) {
    let store = Store::open(location).await.unwrap();
    for id in ["ca_a", "ca_b", "ca_c"] {
        assert_eq!(store.insert_ca(&ca(id)).await.unwrap().version, 1);
    }
    assert!(matches!(
        store.insert_ca(&ca("ca_a")).await,
        Err(StoreError::Exists { .. })
    ));

    let first = store.cas(None, 2).await.unwrap();
    let ids: Vec<_> = first.items.iter().map(|ca| ca.id.as_str()).collect();
    assert_eq!(
        (ids, first.next_after.as_deref()),
        (vec!["ca_a", "ca_b"], Some("ca_b"))
    );
    let second = store.cas(first.next_after.as_deref(), 2).await.unwrap();
    let ids: Vec<_> = second.items.iter().map(|ca| ca.id.as_str()).collect();
    assert_eq!((ids, second.next_after), (vec!["ca_c"], None));

    let Change::Done(changed) = store.update_ca("ca_a", 1, "team A", "{}").await.unwrap() else {
        panic!("the first change at version 1 is made");
    };
    assert_eq!(
        (changed.version, changed.description.as_str()),
        (2, "team A")
    );
    assert_eq!(
        store.update_ca("ca_a", 1, "stale", "").await.unwrap(),
        Change::Conflict { current_version: 2 }
    );
    assert_eq!(
        store.update_ca("ca_x", 1, "", "").await.unwrap(),
        Change::NotFound
    );
    // Two clients that both read version 2 change it at once: one wins.
    let (one, two) = tokio::join!(
        store.update_ca("ca_a", 2, "one", ""),
        store.update_ca("ca_a", 2, "two", "")
    );
    let outcomes = [one.unwrap(), two.unwrap()];
    let made = outcomes
        .iter()
        .filter(|o| matches!(o, Change::Done(_)))
        .count();
    assert_eq!(made, 1, "{outcomes:?}");
    assert!(
        outcomes.contains(&Change::Conflict { current_version: 3 }),
        "{outcomes:?}"
    );

    assert_eq!(
        store.delete_ca("ca_b", Some(7)).await.unwrap(),
        Change::Conflict { current_version: 1 }
    );
    assert_eq!(
        store.delete_ca("ca_b", Some(1)).await.unwrap(),
        Change::Done(())
    );
    assert_eq!(
        store.delete_ca("ca_b", None).await.unwrap(),
        Change::NotFound
    );
    let mut raw = raw_connection(location).await;
    sqlx::raw_sql(
        "INSERT INTO endpoints (id, hostname, kind, terminate_at, pool, rules, description, \
         metadata, created_at, version) VALUES ('ep_1', 'app.example.com', 'http', 'edge', 0, '', \
         '', '', 0, 1); INSERT INTO endpoint_cas (endpoint_id, ca_id) VALUES ('ep_1', 'ca_c');",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    assert_eq!(
        store.delete_ca("ca_c", None).await.unwrap(),
        Change::InUse {
            endpoints: vec!["ep_1".to_owned()]
        }
    );
    assert!(store.ca("ca_c").await.unwrap().is_some());
}

fn endpoint(id: &str, hostname: &str, ca_ids: &[&str]) -> EndpointRow {
    EndpointRow {
        id: id.to_owned(),
        hostname: hostname.to_owned(),
        kind: "http".to_owned(),
        terminate_at: "edge".to_owned(),
        pool: false,
        ca_ids: ca_ids.iter().map(|id| id.to_string()).collect(),
        rules: "[[rules]]\nname = \"everyone\"\naction = \"allow\"\n".to_owned(),
        description: String::new(),
        metadata: String::new(),
        created_at: 1_000,
        version: 0,
    }
}

/// Edge-defined endpoints: one per hostname, only with CAs that exist, nothing half-made when
/// refused, changed against the version read, and keeping their CAs from deletion.
async fn endpoints_are_whole_and_one_per_hostname(location: &str) {
    let store = Store::open(location).await.unwrap();
    store.insert_ca(&ca("ca_team")).await.unwrap();
    let made = store
        .insert_endpoint(&endpoint("ep_1", "app.example.com", &["ca_team"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (made.version, made.ca_ids.clone()),
        (1, vec!["ca_team".to_owned()])
    );
    assert_eq!(store.endpoint("ep_1").await.unwrap(), Some(made));
    assert_eq!(
        store
            .insert_endpoint(&endpoint("ep_2", "app.example.com", &[]))
            .await
            .unwrap(),
        Err(EndpointRefusal::HostnameTaken {
            hostname: "app.example.com".into(),
            endpoint: "ep_1".into()
        })
    );
    assert_eq!(
        store
            .insert_endpoint(&endpoint(
                "ep_3",
                "api.example.com",
                &["ca_team", "ca_gone"]
            ))
            .await
            .unwrap(),
        Err(EndpointRefusal::UnknownCa {
            ca_id: "ca_gone".into()
        })
    );
    assert_eq!(
        store.endpoint("ep_3").await.unwrap(),
        None,
        "nothing half-made"
    );
    assert_eq!(
        store.delete_ca("ca_team", None).await.unwrap(),
        Change::InUse {
            endpoints: vec!["ep_1".to_owned()]
        }
    );

    let mut renamed = endpoint("ep_1", "www.example.com", &[]);
    renamed.pool = true;
    let Ok(Change::Done(changed)) = store.update_endpoint(1, &renamed).await.unwrap() else {
        panic!("the change at version 1 is made");
    };
    assert_eq!(
        (
            changed.version,
            changed.hostname.as_str(),
            changed.pool,
            changed.ca_ids.len()
        ),
        (2, "www.example.com", true, 0)
    );
    assert_eq!(
        store.update_endpoint(1, &renamed).await.unwrap(),
        Ok(Change::Conflict { current_version: 2 })
    );
    // Two edges (two stores) change it at once from the same version: one wins, the other is
    // told of the conflict, and neither fails.
    let other_edge = Store::open(location).await.unwrap();
    let (first, second) = (
        endpoint("ep_1", "one.example.com", &[]),
        endpoint("ep_1", "two.example.com", &[]),
    );
    let (one, two) = tokio::join!(
        store.update_endpoint(2, &first),
        other_edge.update_endpoint(2, &second)
    );
    let outcomes = [one.unwrap().unwrap(), two.unwrap().unwrap()];
    let made = outcomes
        .iter()
        .filter(|o| matches!(o, Change::Done(_)))
        .count();
    assert_eq!(made, 1, "{outcomes:?}");
    assert!(
        outcomes.contains(&Change::Conflict { current_version: 3 }),
        "{outcomes:?}"
    );
    store.update_endpoint(3, &renamed).await.unwrap().unwrap();
    assert_eq!(
        store.delete_ca("ca_team", None).await.unwrap(),
        Change::Done(())
    );
    store
        .insert_endpoint(&endpoint("ep_2", "app.example.com", &[]))
        .await
        .unwrap()
        .unwrap();
    let page = store.endpoints(None, 10).await.unwrap();
    let hostnames: Vec<_> = page.items.iter().map(|e| e.hostname.as_str()).collect();
    assert_eq!(hostnames, ["www.example.com", "app.example.com"]);
    assert_eq!(
        store.delete_endpoint("ep_1", Some(4)).await.unwrap(),
        Change::Done(())
    );
    assert_eq!(store.endpoint("ep_1").await.unwrap(), None);
    assert_eq!(
        store.delete_endpoint("ep_1", None).await.unwrap(),
        Change::NotFound
    );
}

/// Sessions: live while their edge renews the lease; a crashed edge's lapse by themselves, and
/// one an operator ends tells its edge at the next renewal.
async fn sessions_live_only_under_a_renewed_lease(location: &str) {
    let store = Store::open(location).await.unwrap();
    let lease = 15;
    store
        .open_session("s1", "alice", "edge-a", 100, lease)
        .await
        .unwrap();
    store
        .open_session("s2", "alice", "edge-b", 100, lease)
        .await
        .unwrap();
    store
        .open_session("s3", "bob", "edge-b", 100, lease)
        .await
        .unwrap();
    let live = |now| {
        let store = store.clone();
        async move {
            let sessions = store.live_sessions(now).await.unwrap();
            sessions.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(live(110).await, ["s1", "s2", "s3"]);
    // edge-a keeps renewing; edge-b crashed at 100 and renews nothing.
    assert!(
        store
            .renew_session("s1", "edge-a", 110, lease)
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_session("s1", "edge-b", 110, lease)
            .await
            .unwrap(),
        "only its edge renews it"
    );
    assert_eq!(live(120).await, ["s1"]);
    assert_eq!(store.sweep_sessions(120).await.unwrap(), 2);
    assert!(
        !store
            .renew_session("s2", "edge-b", 121, lease)
            .await
            .unwrap(),
        "a lapsed lease is not revived"
    );
    // An operator disconnects alice: edge-a learns it at its next renewal.
    assert!(store.end_session("s1").await.unwrap());
    assert!(
        !store
            .renew_session("s1", "edge-a", 121, lease)
            .await
            .unwrap()
    );
    assert!(live(121).await.is_empty());
}

/// Reserved hostnames: one agent each, refused to a second reservation, released against the
/// version read.
async fn a_hostname_is_reserved_for_one_agent(location: &str) {
    let store = Store::open(location).await.unwrap();
    let reservation = |id: &str, agent: &str| ReservationRow {
        id: id.to_owned(),
        hostname: "app.tunnel.test".to_owned(),
        agent: agent.to_owned(),
        description: String::new(),
        metadata: String::new(),
        created_at: 1_000,
        version: 0,
    };
    let made = store
        .reserve(&reservation("rd_1", "alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((made.version, made.agent.as_str()), (1, "alice"));
    assert_eq!(
        store.reserve(&reservation("rd_2", "bob")).await.unwrap(),
        Err(AlreadyReserved {
            hostname: "app.tunnel.test".into(),
            agent: "alice".into(),
            id: "rd_1".into()
        })
    );
    assert_eq!(
        store.reservation_of("app.tunnel.test").await.unwrap(),
        Some(made)
    );
    assert_eq!(store.reservations(None, 10).await.unwrap().items.len(), 1);
    assert_eq!(
        store.release("rd_1", Some(9)).await.unwrap(),
        Change::Conflict { current_version: 1 }
    );
    assert_eq!(
        store.release("rd_1", Some(1)).await.unwrap(),
        Change::Done(())
    );
    assert_eq!(store.reservation_of("app.tunnel.test").await.unwrap(), None);
    store
        .reserve(&reservation("rd_2", "bob"))
        .await
        .unwrap()
        .unwrap();
}

/// Agent grants: recorded, listed in pages, revoked against the version read.
async fn grants_are_recorded_and_revoked(location: &str) {
    let store = Store::open(location).await.unwrap();
    for (id, agents) in [("ag_1", "ci-*"), ("ag_2", "alice"), ("ag_3", "bob")] {
        let grant = GrantRow {
            id: id.to_owned(),
            agents: agents.to_owned(),
            hostnames: r#"["*.tunnel.test"]"#.to_owned(),
            description: String::new(),
            metadata: String::new(),
            created_at: 1_000,
            version: 0,
        };
        assert_eq!(store.insert_grant(&grant).await.unwrap().version, 1);
        assert!(matches!(
            store.insert_grant(&grant).await,
            Err(StoreError::Exists { .. })
        ));
    }
    let first = store.grants(None, 2).await.unwrap();
    assert_eq!(first.next_after.as_deref(), Some("ag_2"));
    let rest = store.grants(first.next_after.as_deref(), 2).await.unwrap();
    assert_eq!((rest.items.len(), rest.next_after), (1, None));
    assert_eq!(
        store.delete_grant("ag_1", Some(2)).await.unwrap(),
        Change::Conflict { current_version: 1 }
    );
    assert_eq!(
        store.delete_grant("ag_1", Some(1)).await.unwrap(),
        Change::Done(())
    );
    assert_eq!(
        store.delete_grant("ag_1", None).await.unwrap(),
        Change::NotFound
    );
    assert_eq!(store.grants(None, 10).await.unwrap().items.len(), 2);
}

/// A store whose schema a newer moat wrote is refused at open, naming both versions.
async fn a_newer_schema_is_refused(location: &str) {
    Store::open(location).await.unwrap();
    let mut connection = raw_connection(location).await;
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
async fn sqlite_keeps_tokens_and_cas_and_changes_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    tokens_are_kept_and_redeemed_once(path.to_str().unwrap(), Backend::Sqlite).await;
    cas_change_only_against_the_version_read(path.to_str().unwrap()).await;
    let endpoints = dir.path().join("endpoints.db");
    endpoints_are_whole_and_one_per_hostname(endpoints.to_str().unwrap()).await;
    sessions_live_only_under_a_renewed_lease(path.to_str().unwrap()).await;
    a_hostname_is_reserved_for_one_agent(path.to_str().unwrap()).await;
    grants_are_recorded_and_revoked(path.to_str().unwrap()).await;
    let newer = dir.path().join("newer.db");
    a_newer_schema_is_refused(newer.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_tokens_and_cas_and_changes_them_once_across_edges() {
    let cluster = PgCluster::start();
    tokens_are_kept_and_redeemed_once(&cluster.url(), Backend::Postgres).await;
    cas_change_only_against_the_version_read(&cluster.url()).await;
    let endpoints = PgCluster::start();
    endpoints_are_whole_and_one_per_hostname(&endpoints.url()).await;
    sessions_live_only_under_a_renewed_lease(&cluster.url()).await;
    a_hostname_is_reserved_for_one_agent(&cluster.url()).await;
    grants_are_recorded_and_revoked(&cluster.url()).await;
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

/// What the admin API reads besides the edge: tokens and live sessions in pages of ids, one
/// grant or reservation by id, and a token revoked only while unused.
async fn admin_reads_pages_and_revokes_unused_tokens(location: &str) {
    let store = Store::open(location).await.unwrap();
    let now = 10_000;
    for id in ["tok-1", "tok-2", "tok-3"] {
        store
            .insert_join_token(&token(id, "aaaa", now + HOUR))
            .await
            .unwrap();
    }
    let first = store.join_token_page(None, 2).await.unwrap();
    assert_eq!(first.next_after.as_deref(), Some("tok-2"));
    let rest = store.join_token_page(Some("tok-2"), 2).await.unwrap();
    assert_eq!(
        (rest.items[0].id.as_str(), rest.next_after),
        ("tok-3", None)
    );
    store
        .redeem_join_token("tok-1", "aaaa", "alice", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.revoke_join_token("tok-1").await.unwrap(),
        Err(RedeemRefusal::Used {
            id: "tok-1".into(),
            used_at: now
        }),
        "a used token stays as the record of the join"
    );
    assert_eq!(store.revoke_join_token("tok-2").await.unwrap(), Ok(()));
    assert_eq!(
        store.revoke_join_token("tok-2").await.unwrap(),
        Err(RedeemRefusal::Unknown { id: "tok-2".into() })
    );
    assert!(matches!(
        store.redeem_join_token("tok-2", "aaaa", "bob", now).await,
        Ok(Err(RedeemRefusal::Unknown { .. }))
    ));

    for (id, started) in [("s-a", now), ("s-b", now), ("s-old", now - 100)] {
        store
            .open_session(id, "alice", "edge-a", started, 15)
            .await
            .unwrap();
    }
    let page = store.live_session_page(now, None, 1).await.unwrap();
    assert_eq!(
        (page.items[0].id.as_str(), page.next_after.as_deref()),
        ("s-a", Some("s-a"))
    );
    let page = store.live_session_page(now, Some("s-a"), 5).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        (ids, page.next_after),
        (vec!["s-b"], None),
        "lapsed: not listed"
    );
    assert!(store.live_session("s-b", now).await.unwrap().is_some());
    assert_eq!(store.live_session("s-old", now).await.unwrap(), None);

    let grant = GrantRow {
        id: "ag_x".into(),
        agents: "ci-*".into(),
        hostnames: r#"["*.ci.test"]"#.into(),
        description: String::new(),
        metadata: String::new(),
        created_at: 1,
        version: 0,
    };
    let made = store.insert_grant(&grant).await.unwrap();
    assert_eq!(store.grant("ag_x").await.unwrap(), Some(made));
    assert_eq!(store.grant("ag_y").await.unwrap(), None);
    let reservation = ReservationRow {
        id: "rd_x".into(),
        hostname: "x.tunnel.test".into(),
        agent: "alice".into(),
        description: String::new(),
        metadata: String::new(),
        created_at: 1,
        version: 0,
    };
    let made = store.reserve(&reservation).await.unwrap().unwrap();
    assert_eq!(store.reservation("rd_x").await.unwrap(), Some(made));
    assert_eq!(store.reservation("rd_y").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serves_the_admin_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.db");
    admin_reads_pages_and_revokes_unused_tokens(path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_the_admin_reads() {
    let cluster = PgCluster::start();
    admin_reads_pages_and_revokes_unused_tokens(&cluster.url()).await;
}
