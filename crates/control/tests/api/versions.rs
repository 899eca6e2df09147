//! Lost updates, refused: of two changes made at once against the same version, one wins and
//! the other gets 412; changes without a version both apply, one after the other. On SQLite
//! and on PostgreSQL, through the real listener.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::postgres::PgCluster;
use crate::support::{Admin, TestCa};

/// Two admins change `uri` at once with `If-Match: "1"`; returns both statuses, sorted.
async fn race(admin: &Admin, uri: &str, first: Value, second: Value) -> Vec<StatusCode> {
    let (one, two) = tokio::join!(
        admin.call(Method::PATCH, uri, Some("\"1\""), Some(first)),
        admin.call(Method::PATCH, uri, Some("\"1\""), Some(second)),
    );
    let mut statuses = vec![one.0, two.0];
    statuses.sort();
    for (status, _, body) in [one, two] {
        if status == StatusCode::PRECONDITION_FAILED {
            assert_eq!(body["error_code"], "MOAT_VERSION_MISMATCH", "{body}");
            assert_eq!(body["details"]["current_version"], 2, "{body}");
        }
    }
    statuses
}

async fn one_of_two_changes_against_a_version_wins(admin: &Admin) {
    let (status, ca) = admin
        .send(
            Method::POST,
            "/certificate_authorities",
            Some(json!({"ca_pem": TestCa::new("Race CA").pem})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ca}");
    let ca_uri = ca["uri"].as_str().unwrap();
    assert_eq!(
        race(
            admin,
            ca_uri,
            json!({"description": "one"}),
            json!({"description": "two"})
        )
        .await,
        [StatusCode::OK, StatusCode::PRECONDITION_FAILED]
    );

    let (status, endpoint) = admin
        .send(
            Method::POST,
            "/endpoints",
            Some(json!({"hostname": "race.example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let endpoint_uri = endpoint["uri"].as_str().unwrap();
    assert_eq!(
        race(
            admin,
            endpoint_uri,
            json!({"hostname": "one.example.com"}),
            json!({"pool": true})
        )
        .await,
        [StatusCode::OK, StatusCode::PRECONDITION_FAILED]
    );

    // Without a version, both changes apply, in some order.
    let (one, two) = tokio::join!(
        admin.send(Method::PATCH, ca_uri, Some(json!({"metadata": "a"}))),
        admin.send(Method::PATCH, ca_uri, Some(json!({"description": "b"}))),
    );
    assert_eq!(
        (one.0, two.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        one.1,
        two.1
    );
    let (_, read) = admin.send(Method::GET, ca_uri, None).await;
    assert_eq!(
        (
            read["version"].as_i64(),
            read["metadata"].as_str(),
            read["description"].as_str()
        ),
        (Some(4), Some("a"), Some("b")),
        "neither change is lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_lost_updates() {
    let admin = Admin::sqlite().await;
    one_of_two_changes_against_a_version_wins(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_lost_updates() {
    let cluster = PgCluster::start();
    let admin = Admin::on(&cluster.url()).await;
    one_of_two_changes_against_a_version_wins(&admin).await;
}
