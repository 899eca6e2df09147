//! A tour of every route through the real listener, asserting what each answers: records
//! made, listed in pages, read with their ETag, changed against a version and deleted; and
//! every kind of refusal, each naming its field.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::{Admin, REFUSE_TOKEN, TestCa, assert_refused, unix_now};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// Every route, with what each refuses; `admin` records every exchange.
pub async fn tour(admin: &Admin) {
    let before = admin.hooks.changes();
    let mut changes = 0;
    let ca_id = certificate_authorities(admin, &mut changes).await;
    endpoints(admin, &ca_id, &mut changes).await;
    reserved_domains(admin, &mut changes).await;
    agent_grants(admin, &mut changes).await;
    join_tokens(admin, &mut changes).await;
    tunnel_sessions(admin, &mut changes).await;
    requests_the_api_refuses_whole(admin).await;
    let (status, document) = admin.send(GET, "/openapi.json", None).await;
    assert_eq!(
        (status, document["openapi"].as_str()),
        (StatusCode::OK, Some("3.1.0"))
    );
    assert_eq!(
        admin.hooks.changes() - before,
        changes,
        "the edge hears of every committed change, and of nothing else"
    );
}

async fn certificate_authorities(admin: &Admin, changes: &mut usize) -> String {
    let team = TestCa::new("Team CA");
    let (status, headers, ca) = admin
        .call(
            POST,
            "/certificate_authorities",
            None,
            Some(json!({"ca_pem": format!("text before\n{}", team.pem), "description": "team"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ca}");
    *changes += 1;
    let id = ca["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ca_"), "{id}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(
        headers["location"],
        format!("/certificate_authorities/{id}")
    );
    assert_eq!(ca["uri"], format!("/certificate_authorities/{id}"));
    assert_eq!(ca["subject_common_name"], "Team CA");
    assert_eq!(
        ca["ca_pem"],
        team.pem.replace("\r\n", "\n"),
        "the PEM alone is kept"
    );
    assert_eq!(
        (ca["version"].as_i64(), ca["description"].as_str()),
        (Some(1), Some("team"))
    );
    assert!(ca["not_after"].as_str().unwrap().ends_with('Z'), "{ca}");

    // A leaf is no CA: refused in the gateway's words, naming the field.
    let leaf = team.client("just-a-client");
    let refused = admin
        .send(
            POST,
            "/certificate_authorities",
            Some(json!({"ca_pem": leaf.cert_pem})),
        )
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("ca_pem"),
        "ca_pem: certificate #1 (CN=just-a-client) is not a CA (basicConstraints cA=false)",
    );
    let two = format!("{}{}", team.pem, TestCa::new("Other").pem);
    let refused = admin
        .send(
            POST,
            "/certificate_authorities",
            Some(json!({"ca_pem": two})),
        )
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("ca_pem"),
        "holds 2 certificates",
    );
    for (body, field, words) in [
        (json!({}), "ca_pem", "field \"ca_pem\" is required"),
        (
            json!({"ca_pem": 7}),
            "ca_pem",
            "field \"ca_pem\" (number): invalid type",
        ),
        (
            json!({"ca_pem": team.pem, "colour": "red"}),
            "colour",
            "unknown field \"colour\"",
        ),
        (
            json!({"ca_pem": team.pem, "description": "x".repeat(256)}),
            "description",
            "at most 255",
        ),
    ] {
        let refused = admin
            .send(POST, "/certificate_authorities", Some(body))
            .await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "MOAT_INVALID_FIELD",
            Some(field),
            words,
        );
    }
    let refused = admin
        .send(POST, "/certificate_authorities", Some(json!(["a list"])))
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_BAD_JSON",
        None,
        "a JSON array, not an object",
    );

    // A second CA, for paging.
    let (status, second) = admin
        .send(
            POST,
            "/certificate_authorities",
            Some(json!({"ca_pem": TestCa::new("Second CA").pem})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    *changes += 1;
    let (status, page) = admin
        .send(GET, "/certificate_authorities?limit=1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["uri"], "/certificate_authorities");
    assert_eq!(
        page["certificate_authorities"][0]["id"],
        id.as_str(),
        "ids follow creation"
    );
    let next = page["next_page_uri"].as_str().unwrap().to_owned();
    assert_eq!(next, format!("/certificate_authorities?after={id}&limit=1"));
    let (_, page) = admin.send(GET, &next, None).await;
    assert_eq!(page["certificate_authorities"][0]["id"], second["id"]);
    assert_eq!(page["next_page_uri"], Value::Null);
    let refused = admin
        .send(GET, "/certificate_authorities?limit=5000", None)
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("limit"),
        "from 1 to 1000",
    );

    let uri = format!("/certificate_authorities/{id}");
    let (status, headers, read) = admin.call(GET, &uri, None, None).await;
    assert_eq!((status, &read), (StatusCode::OK, &ca));
    assert_eq!(headers["etag"], "\"1\"");
    let (status, headers, changed) = admin
        .call(
            PATCH,
            &uri,
            Some("\"1\""),
            Some(json!({"metadata": "{\"team\":\"a\"}"})),
        )
        .await;
    assert_eq!(
        (status, changed["version"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{changed}"
    );
    *changes += 1;
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        (
            changed["description"].as_str(),
            changed["metadata"].as_str()
        ),
        (Some("team"), Some("{\"team\":\"a\"}"))
    );
    let stale = admin
        .call(
            PATCH,
            &uri,
            Some("\"1\""),
            Some(json!({"description": "late"})),
        )
        .await;
    assert_refused(
        &(stale.0, stale.2.clone()),
        StatusCode::PRECONDITION_FAILED,
        "MOAT_VERSION_MISMATCH",
        None,
        "is at version 2, not 1",
    );
    assert_eq!(stale.2["details"]["current_version"], 2);
    let (status, changed) = admin
        .send(PATCH, &uri, Some(json!({"description": "b", "version": 2})))
        .await;
    assert_eq!(
        (status, changed["version"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    *changes += 1;
    let refused = admin
        .send(PATCH, &uri, Some(json!({"ca_pem": team.pem})))
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("ca_pem"),
        "unknown field \"ca_pem\"",
    );
    let refused = admin
        .call(PATCH, &uri, Some("\"3\""), Some(json!({"version": 4})))
        .await;
    assert_refused(
        &(refused.0, refused.2),
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("version"),
        "differ",
    );
    let refused = admin.call(PATCH, &uri, Some("soon"), Some(json!({}))).await;
    assert_refused(
        &(refused.0, refused.2),
        StatusCode::BAD_REQUEST,
        "MOAT_INVALID_FIELD",
        Some("If-Match"),
        "not a version",
    );
    let missing = admin
        .send(GET, "/certificate_authorities/ca_nope", None)
        .await;
    assert_refused(
        &missing,
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "no certificate authority ca_nope",
    );
    let missing = admin
        .send(PATCH, "/certificate_authorities/ca_nope", Some(json!({})))
        .await;
    assert_refused(
        &missing,
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "ca_nope",
    );

    // Bodies the client would not send: not JSON, undeclared, too large, broken.
    let raw = |content_type: Option<&str>, body: Vec<u8>| {
        let mut request = Request::builder()
            .method(POST)
            .uri("/certificate_authorities");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Full::new(Bytes::from(body))).unwrap()
    };
    let (status, _, refused) = admin.raw(raw(Some("text/plain"), b"{}".to_vec())).await;
    assert_refused(
        &(status, refused),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "MOAT_UNSUPPORTED_MEDIA_TYPE",
        None,
        "text/plain",
    );
    let (status, _, refused) = admin.raw(raw(None, b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    let (status, _, refused) = admin
        .raw(raw(
            Some("application/json"),
            vec![b' '; moat_control::MAX_BODY_BYTES + 1],
        ))
        .await;
    assert_refused(
        &(status, refused),
        StatusCode::PAYLOAD_TOO_LARGE,
        "MOAT_BODY_TOO_LARGE",
        None,
        "1048576 bytes",
    );
    let (status, _, refused) = admin
        .raw(raw(
            Some("application/json; charset=utf-8"),
            b"{\"ca_pem\": ".to_vec(),
        ))
        .await;
    assert_refused(
        &(status, refused),
        StatusCode::BAD_REQUEST,
        "MOAT_BAD_JSON",
        None,
        "line 1 column 11",
    );

    // The second CA goes; its stale version is refused first.
    let second_uri = second["uri"].as_str().unwrap();
    let stale = admin.call(DELETE, second_uri, Some("\"7\""), None).await;
    assert_eq!(stale.0, StatusCode::PRECONDITION_FAILED, "{}", stale.2);
    let (status, _, gone) = admin.call(DELETE, second_uri, Some("\"1\""), None).await;
    assert_eq!((status, gone), (StatusCode::NO_CONTENT, Value::Null));
    *changes += 1;
    let missing = admin.send(DELETE, second_uri, None).await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    id
}

async fn endpoints(admin: &Admin, ca_id: &str, changes: &mut usize) {
    let rules =
        "[[rules]]\nname = \"ops\"\naction = \"allow\"\ninclude = [{ common_name = \"ops-*\" }]\n";
    let (status, headers, endpoint) = admin
        .call(
            POST,
            "/endpoints",
            None,
            Some(json!({
                "hostname": "App.Example.com",
                "certificate_authority_ids": [ca_id],
                "rules": rules,
                "metadata": "{}"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    *changes += 1;
    assert_eq!(headers["etag"], "\"1\"");
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ep_"));
    assert_eq!(
        (
            endpoint["hostname"].as_str(),
            endpoint["kind"].as_str(),
            endpoint["terminate_at"].as_str(),
            endpoint["pool"].as_bool(),
            endpoint["rules"].as_str()
        ),
        (
            Some("app.example.com"),
            Some("http"),
            Some("edge"),
            Some(false),
            Some(rules)
        )
    );
    assert_eq!(endpoint["certificate_authority_ids"], json!([ca_id]));

    let taken = admin
        .send(
            POST,
            "/endpoints",
            Some(json!({"hostname": "app.example.com"})),
        )
        .await;
    assert_refused(
        &taken,
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        &format!("already endpoint {id}'s"),
    );
    for (body, field, words) in [
        (
            json!({"hostname": "*.example.com"}),
            "hostname",
            "has a wildcard",
        ),
        (
            json!({"hostname": "a..example.com"}),
            "hostname",
            "is not a DNS name",
        ),
        (
            json!({"hostname": "b.example.com", "kind": "udp"}),
            "kind",
            "use \"http\" or \"tls\"",
        ),
        (
            json!({"hostname": "b.example.com", "terminate_at": "moon"}),
            "terminate_at",
            "use \"edge\" or \"agent\"",
        ),
        (
            json!({"hostname": "b.example.com", "kind": "tls", "terminate_at": "agent", "certificate_authority_ids": [ca_id]}),
            "certificate_authority_ids",
            "the edge never sees the client's certificate",
        ),
        (
            json!({"hostname": "b.example.com", "terminate_at": "agent", "rules": rules}),
            "rules",
            "terminate_at is \"agent\"",
        ),
        (
            json!({"hostname": "b.example.com", "rules": rules}),
            "rules",
            "trusts no CA",
        ),
        (
            json!({"hostname": "b.example.com", "certificate_authority_ids": [ca_id], "rules": "[[rules]]\nname = \"x\"\naction = \"maybe\"\n"}),
            "rules",
            "rules",
        ),
        (
            json!({"hostname": "b.example.com", "certificate_authority_ids": ["ca_gone"]}),
            "certificate_authority_ids",
            "no certificate authority ca_gone exists",
        ),
        (
            json!({"hostname": "b.example.com", "certificate_authority_ids": (0..11).map(|n| format!("ca_{n}")).collect::<Vec<_>>()}),
            "certificate_authority_ids",
            "at most 10",
        ),
        (
            json!({"hostname": "b.example.com", "pool": "yes"}),
            "pool",
            "invalid type",
        ),
    ] {
        let refused = admin.send(POST, "/endpoints", Some(body.clone())).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "MOAT_INVALID_FIELD",
            Some(field),
            words,
        );
    }
    let (status, passthrough) = admin
        .send(POST, "/endpoints", Some(json!({"hostname": "raw.example.com", "kind": "tls", "terminate_at": "agent", "pool": true})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{passthrough}");
    *changes += 1;

    let (status, list) = admin.send(GET, "/endpoints", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(list["next_page_uri"], Value::Null);

    // The CA is in use: its deletion names the endpoint.
    let in_use = admin
        .send(DELETE, &format!("/certificate_authorities/{ca_id}"), None)
        .await;
    assert_refused(
        &in_use,
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        None,
        &format!("is used by endpoint {id}"),
    );
    assert_eq!(in_use.1["details"]["endpoints"], json!([id]));

    let uri = format!("/endpoints/{id}");
    let (status, headers, _) = admin.call(GET, &uri, None, None).await;
    assert_eq!(
        (status, &headers["etag"]),
        (StatusCode::OK, &"\"1\"".parse().unwrap())
    );
    let (status, changed) = admin
        .send(
            PATCH,
            &uri,
            Some(json!({"pool": true, "certificate_authority_ids": [], "rules": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    *changes += 1;
    assert_eq!(
        (changed["pool"].as_bool(), changed["version"].as_i64()),
        (Some(true), Some(2))
    );
    assert_eq!(changed["certificate_authority_ids"], json!([]));
    let refused = admin
        .send(PATCH, &uri, Some(json!({"hostname": "raw.example.com"})))
        .await;
    assert_refused(
        &refused,
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        "raw.example.com",
    );
    let refused = admin
        .send(
            PATCH,
            &uri,
            Some(json!({"terminate_at": "agent", "rules": "  "})),
        )
        .await;
    assert_eq!(
        refused.0,
        StatusCode::OK,
        "blank rules are none: {}",
        refused.1
    );
    *changes += 1;
    let stale = admin.call(DELETE, &uri, Some("\"1\""), None).await;
    assert_eq!(stale.0, StatusCode::PRECONDITION_FAILED);
    let (status, _) = admin.send(DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    *changes += 1;
    let (status, _) = admin
        .send(DELETE, &format!("/certificate_authorities/{ca_id}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "no endpoint uses the CA any more"
    );
    *changes += 1;
}

async fn reserved_domains(admin: &Admin, changes: &mut usize) {
    let (status, headers, reserved) = admin
        .call(
            POST,
            "/reserved_domains",
            None,
            Some(
                json!({"hostname": "ci.example.com.", "agent": "ci-runner-1", "description": "CI"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reserved}");
    *changes += 1;
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(
        (reserved["hostname"].as_str(), reserved["agent"].as_str()),
        (Some("ci.example.com"), Some("ci-runner-1"))
    );
    let taken = admin
        .send(
            POST,
            "/reserved_domains",
            Some(json!({"hostname": "ci.example.com", "agent": "other"})),
        )
        .await;
    assert_refused(
        &taken,
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        "already reserved for agent ci-runner-1",
    );
    for (body, field) in [
        (
            json!({"hostname": "*.example.com", "agent": "a"}),
            "hostname",
        ),
        (
            json!({"hostname": "x.example.com", "agent": "ci-*"}),
            "agent",
        ),
        (json!({"hostname": "x.example.com", "agent": ""}), "agent"),
        (json!({"hostname": "x.example.com"}), "agent"),
    ] {
        let refused = admin.send(POST, "/reserved_domains", Some(body)).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "MOAT_INVALID_FIELD",
            Some(field),
            field,
        );
    }
    let (status, list) = admin.send(GET, "/reserved_domains", None).await;
    assert_eq!(
        (status, list["reserved_domains"][0].clone()),
        (StatusCode::OK, reserved.clone())
    );
    let uri = reserved["uri"].as_str().unwrap();
    let (status, read) = admin.send(GET, uri, None).await;
    assert_eq!((status, read), (StatusCode::OK, reserved.clone()));
    let (status, _, _) = admin.call(DELETE, uri, Some("\"1\""), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    *changes += 1;
    assert_eq!(admin.send(GET, uri, None).await.0, StatusCode::NOT_FOUND);
}

async fn agent_grants(admin: &Admin, changes: &mut usize) {
    let (status, grant) = admin
        .send(POST, "/agent_grants", Some(json!({"agents": "ci-*", "hostnames": ["*.CI.example.com", "status.example.com", "*.ci.example.com"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    *changes += 1;
    assert!(grant["id"].as_str().unwrap().starts_with("ag_"));
    assert_eq!(
        grant["hostnames"],
        json!(["*.ci.example.com", "status.example.com"]),
        "lower-case, once each"
    );
    for (body, field, words) in [
        (
            json!({"agents": "ci-*", "hostnames": ["*.com"]}),
            "hostnames",
            "covers a whole top-level domain",
        ),
        (
            json!({"agents": "ci-*", "hostnames": ["a.*.example.com"]}),
            "hostnames",
            "a wildcard other than one leading",
        ),
        (
            json!({"agents": "ci-*", "hostnames": []}),
            "hostnames",
            "at least one",
        ),
        (
            json!({"agents": "", "hostnames": ["a.example.com"]}),
            "agents",
            "is empty",
        ),
        (
            json!({"agents": "ci-*", "hostnames": "a.example.com"}),
            "hostnames",
            "invalid type",
        ),
    ] {
        let refused = admin.send(POST, "/agent_grants", Some(body)).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "MOAT_INVALID_FIELD",
            Some(field),
            words,
        );
    }
    let (status, list) = admin.send(GET, "/agent_grants?limit=10", None).await;
    assert_eq!(
        (status, list["agent_grants"][0].clone()),
        (StatusCode::OK, grant.clone())
    );
    let uri = grant["uri"].as_str().unwrap();
    let (status, headers, read) = admin.call(GET, uri, None, None).await;
    assert_eq!(
        (status, read, &headers["etag"]),
        (StatusCode::OK, grant.clone(), &"\"1\"".parse().unwrap())
    );
    let (status, _) = admin.send(DELETE, uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    *changes += 1;
    assert_eq!(admin.send(DELETE, uri, None).await.0, StatusCode::NOT_FOUND);
}

async fn join_tokens(admin: &Admin, changes: &mut usize) {
    let (status, headers, token) = admin
        .call(
            POST,
            "/join_tokens",
            None,
            Some(json!({"grant": ["*.A.example.com"], "ttl": "2h", "description": "laptop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    *changes += 1;
    assert_eq!(
        headers["cache-control"], "no-store",
        "the token's text is shown once"
    );
    let id = token["id"].as_str().unwrap().to_owned();
    assert_eq!(token["token"], format!("moat-join-1.test-{id}"));
    assert_eq!(
        (token["grant"].clone(), token["used_at"].clone()),
        (json!(["*.a.example.com"]), Value::Null)
    );
    let (status, unused) = admin.send(POST, "/join_tokens", Some(json!({}))).await;
    assert_eq!(
        (status, unused["grant"].clone()),
        (StatusCode::CREATED, json!([])),
        "{unused}"
    );
    *changes += 1;
    for (body, field, words) in [
        (json!({"ttl": "0s"}), "ttl", "ttl is zero"),
        (json!({"ttl": "soon"}), "ttl", "is not a duration"),
        (json!({"grant": ["*"]}), "grant", "a wildcard other than"),
        (json!({"grant": ["."]}), "grant", "names no domain"),
        (json!({"secret": "x"}), "secret", "unknown field"),
    ] {
        let refused = admin.send(POST, "/join_tokens", Some(body)).await;
        assert_refused(
            &refused,
            StatusCode::BAD_REQUEST,
            "MOAT_INVALID_FIELD",
            Some(field),
            words,
        );
    }
    let refused = admin
        .send(
            POST,
            "/join_tokens",
            Some(json!({"description": REFUSE_TOKEN})),
        )
        .await;
    assert_refused(
        &refused,
        StatusCode::BAD_REQUEST,
        "MOAT_REFUSED",
        None,
        "makes no join tokens",
    );

    let (status, list) = admin.send(GET, "/join_tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let listed = &list["join_tokens"][0];
    assert_eq!(listed["id"], id.as_str());
    assert!(
        listed.get("token").is_none(),
        "no secret in lists: {listed}"
    );
    let uri = format!("/join_tokens/{id}");
    let (status, read) = admin.send(GET, &uri, None).await;
    assert_eq!((status, &read), (StatusCode::OK, listed));

    // Redeemed, it stays as the record of the join; unused, it can be revoked.
    admin
        .store
        .redeem_join_token(&id, &"0".repeat(64), "laptop-7", unix_now())
        .await
        .unwrap()
        .unwrap();
    let (_, read) = admin.send(GET, &uri, None).await;
    assert_eq!(read["used_by"], "laptop-7");
    let refused = admin.send(DELETE, &uri, None).await;
    assert_refused(
        &refused,
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        None,
        "a used token is spent",
    );
    let (status, _) = admin
        .send(DELETE, unused["uri"].as_str().unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    *changes += 1;
    assert_eq!(
        admin
            .send(DELETE, unused["uri"].as_str().unwrap(), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn tunnel_sessions(admin: &Admin, changes: &mut usize) {
    let now = unix_now();
    admin
        .store
        .open_session("s-live", "laptop-7", "edge-a", now, 60)
        .await
        .unwrap();
    admin
        .store
        .open_session("s-lapsed", "laptop-8", "edge-b", now - 120, 60)
        .await
        .unwrap();
    let (status, list) = admin.send(GET, "/tunnel_sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = list["tunnel_sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "only live leases: {list}");
    assert_eq!(
        (sessions[0]["agent"].as_str(), sessions[0]["edge"].as_str()),
        (Some("laptop-7"), Some("edge-a"))
    );
    let (status, read) = admin.send(GET, "/tunnel_sessions/s-live", None).await;
    assert_eq!((status, &read), (StatusCode::OK, &sessions[0]));
    assert_eq!(
        admin.send(GET, "/tunnel_sessions/s-lapsed", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = admin.send(DELETE, "/tunnel_sessions/s-live", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    *changes += 1;
    assert!(
        !admin
            .store
            .renew_session("s-live", "edge-a", now + 1, 60)
            .await
            .unwrap(),
        "its edge learns it at the next renewal"
    );
    let missing = admin.send(DELETE, "/tunnel_sessions/s-live", None).await;
    assert_refused(
        &missing,
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "no tunnel session s-live",
    );
}

async fn requests_the_api_refuses_whole(admin: &Admin) {
    let missing = admin.send(GET, "/tunnels", None).await;
    assert_refused(
        &missing,
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "GET /openapi.json lists",
    );
    let (status, headers, body) = admin
        .call(Method::PUT, "/endpoints", None, Some(json!({})))
        .await;
    assert_refused(
        &(status, body),
        StatusCode::METHOD_NOT_ALLOWED,
        "MOAT_METHOD_NOT_ALLOWED",
        None,
        "takes GET, POST",
    );
    assert_eq!(headers["allow"], "GET, POST");
    let (status, headers, _) = admin
        .call(POST, "/tunnel_sessions/s-1", None, Some(json!({})))
        .await;
    assert_eq!(
        (status, &headers["allow"]),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            &"GET, DELETE".parse().unwrap()
        )
    );
}
