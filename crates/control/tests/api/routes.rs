//! A tour of every route through the real listener, asserting what each answers: records
//! made, listed in pages, read with their ETag, changed against a version and deleted; and
//! every kind of refusal, each naming its field.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::{Admin, REFUSE_TOKEN, TestCa, invalid, refusal, unix_now};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// Every route, with what each refuses; `admin` records every exchange.
pub async fn tour(admin: &Admin) {
    let ca_id = certificate_authorities(admin).await;
    endpoints(admin, &ca_id).await;
    reserved_domains(admin).await;
    agent_grants(admin).await;
    join_tokens(admin).await;
    tunnel_sessions(admin).await;
    requests_the_api_refuses_whole(admin).await;
    let (status, document) = admin.send(GET, "/openapi.json", None).await;
    assert_eq!(
        (status, document["openapi"].as_str()),
        (StatusCode::OK, Some("3.1.0"))
    );
    let committed = admin
        .exchanges
        .lock()
        .unwrap()
        .iter()
        .filter(|exchange| exchange.method != GET && exchange.status.is_success())
        .count();
    assert_eq!(
        admin.hooks.changes(),
        committed,
        "the edge hears of every committed change, and of nothing else"
    );
}

/// Makes a record with `body` at `path`; returns the answer's headers and the record.
async fn make(admin: &Admin, path: &str, body: Value) -> (HeaderMap, Value) {
    let (status, headers, made) = admin.call(POST, path, None, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(headers["location"], made["uri"].as_str().unwrap());
    (headers, made)
}

/// The answer's ETag.
fn etag(headers: &HeaderMap) -> &str {
    headers["etag"].to_str().unwrap()
}

/// Asserts that `status` is `expected`.
fn expect(answer: (StatusCode, Value), expected: StatusCode) -> Value {
    assert_eq!(answer.0, expected, "{}", answer.1);
    answer.1
}

async fn certificate_authorities(admin: &Admin) -> String {
    let path = "/certificate_authorities";
    let team = TestCa::new("Team CA");
    let before = format!("text before\n{}", team.pem);
    let (headers, ca) = make(
        admin,
        path,
        json!({"ca_pem": before, "description": "team"}),
    )
    .await;
    let id = ca["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ca_"), "{id}");
    assert_eq!(headers["etag"], "\"1\"");
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
    let leaf = team.client("just-a-client").cert_pem;
    let not_a_ca =
        "ca_pem: certificate #1 (CN=just-a-client) is not a CA (basicConstraints cA=false)";
    let two = format!("{}{}", team.pem, TestCa::new("Other").pem);
    for (body, field, words) in [
        (json!({"ca_pem": leaf}), "ca_pem", not_a_ca),
        (json!({"ca_pem": two}), "ca_pem", "holds 2 certificates"),
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
        admin
            .refuses(POST, path, None, Some(body), invalid(field, words))
            .await;
    }
    let not_an_object = refusal(
        StatusCode::BAD_REQUEST,
        "MOAT_BAD_JSON",
        None,
        "a JSON array, not an object",
    );
    admin
        .refuses(POST, path, None, Some(json!(["a list"])), not_an_object)
        .await;

    // A second CA, for paging.
    let (_, second) = make(admin, path, json!({"ca_pem": TestCa::new("Second CA").pem})).await;
    let page = expect(
        admin
            .send(GET, "/certificate_authorities?limit=1", None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(page["uri"], path);
    assert_eq!(
        page["certificate_authorities"][0]["id"],
        id.as_str(),
        "ids follow creation"
    );
    let next = page["next_page_uri"].as_str().unwrap().to_owned();
    assert_eq!(next, format!("/certificate_authorities?after={id}&limit=1"));
    let page = expect(admin.send(GET, &next, None).await, StatusCode::OK);
    assert_eq!(page["certificate_authorities"][0]["id"], second["id"]);
    assert_eq!(page["next_page_uri"], Value::Null);
    let too_many = invalid("limit", "from 1 to 1000");
    admin
        .refuses(
            GET,
            "/certificate_authorities?limit=5000",
            None,
            None,
            too_many,
        )
        .await;

    let uri = format!("/certificate_authorities/{id}");
    let (status, headers, read) = admin.call(GET, &uri, None, None).await;
    assert_eq!(
        (status, &read, etag(&headers)),
        (StatusCode::OK, &ca, "\"1\"")
    );
    let metadata = json!({"metadata": "{\"team\":\"a\"}"});
    let (status, headers, changed) = admin.call(PATCH, &uri, Some("\"1\""), Some(metadata)).await;
    assert_eq!(
        (status, changed["version"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{changed}"
    );
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        (
            changed["description"].as_str(),
            changed["metadata"].as_str()
        ),
        (Some("team"), Some("{\"team\":\"a\"}"))
    );
    let stale = refusal(
        StatusCode::PRECONDITION_FAILED,
        "MOAT_VERSION_MISMATCH",
        None,
        "is at version 2, not 1",
    );
    let (_, refused) = admin
        .refuses(
            PATCH,
            &uri,
            Some("\"1\""),
            Some(json!({"description": "late"})),
            stale,
        )
        .await;
    assert_eq!(refused["details"]["current_version"], 2);
    let changed = expect(
        admin
            .send(PATCH, &uri, Some(json!({"description": "b", "version": 2})))
            .await,
        StatusCode::OK,
    );
    assert_eq!(changed["version"], 3);
    for (if_match, body, refused) in [
        (
            None,
            json!({"ca_pem": team.pem}),
            invalid("ca_pem", "unknown field \"ca_pem\""),
        ),
        (
            Some("\"3\""),
            json!({"version": 4}),
            invalid("version", "differ"),
        ),
        (
            Some("soon"),
            json!({}),
            invalid("If-Match", "not a version"),
        ),
    ] {
        admin
            .refuses(PATCH, &uri, if_match, Some(body), refused)
            .await;
    }
    let missing = refusal(
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "no certificate authority ca_nope",
    );
    admin
        .refuses(GET, "/certificate_authorities/ca_nope", None, None, missing)
        .await;
    admin
        .refuses(
            PATCH,
            "/certificate_authorities/ca_nope",
            None,
            Some(json!({})),
            missing,
        )
        .await;

    // Bodies the client would not send: undeclared, too large, broken.
    let not_json = "MOAT_UNSUPPORTED_MEDIA_TYPE";
    let too_large = vec![b' '; moat_control::MAX_BODY_BYTES + 1];
    for (content_type, body, expected) in [
        (
            Some("text/plain"),
            b"{}".to_vec(),
            refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                not_json,
                None,
                "text/plain",
            ),
        ),
        (
            None,
            b"{}".to_vec(),
            refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                not_json,
                None,
                "send JSON",
            ),
        ),
        (
            Some("application/json"),
            too_large,
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MOAT_BODY_TOO_LARGE",
                None,
                "1048576 bytes",
            ),
        ),
        (
            Some("application/json; charset=utf-8"),
            b"{\"ca_pem\": ".to_vec(),
            refusal(
                StatusCode::BAD_REQUEST,
                "MOAT_BAD_JSON",
                None,
                "line 1 column 11",
            ),
        ),
    ] {
        let mut request = Request::builder().method(POST).uri(path);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, _, refused) = admin
            .raw(request.body(Full::new(Bytes::from(body))).unwrap())
            .await;
        expected.check(status, &refused);
    }

    // The second CA goes; a stale version is refused first.
    let second_uri = second["uri"].as_str().unwrap();
    let stale = refusal(
        StatusCode::PRECONDITION_FAILED,
        "MOAT_VERSION_MISMATCH",
        None,
        "not 7",
    );
    admin
        .refuses(DELETE, second_uri, Some("\"7\""), None, stale)
        .await;
    let (status, _, gone) = admin.call(DELETE, second_uri, Some("\"1\""), None).await;
    assert_eq!((status, gone), (StatusCode::NO_CONTENT, Value::Null));
    let missing = refusal(
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "GET /certificate_authorities lists them",
    );
    admin.refuses(DELETE, second_uri, None, None, missing).await;
    id
}

async fn endpoints(admin: &Admin, ca_id: &str) {
    let path = "/endpoints";
    let rules =
        "[[rules]]\nname = \"ops\"\naction = \"allow\"\ninclude = [{ common_name = \"ops-*\" }]\n";
    let body = json!({"hostname": "App.Example.com", "certificate_authority_ids": [ca_id], "rules": rules});
    let (headers, endpoint) = make(admin, path, body).await;
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

    let taken = refusal(
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        "already endpoint",
    );
    admin
        .refuses(
            POST,
            path,
            None,
            Some(json!({"hostname": "app.example.com"})),
            taken,
        )
        .await;
    let agent = "the edge never sees the client's certificate";
    let eleven: Vec<String> = (0..11).map(|n| format!("ca_{n}")).collect();
    let bad_rules = "[[rules]]\nname = \"x\"\naction = \"maybe\"\n";
    let host = "b.example.com";
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
            json!({"hostname": host, "kind": "udp"}),
            "kind",
            "use \"http\" or \"tls\"",
        ),
        (
            json!({"hostname": host, "terminate_at": "moon"}),
            "terminate_at",
            "use \"edge\" or \"agent\"",
        ),
        (
            json!({"hostname": host, "terminate_at": "agent", "certificate_authority_ids": [ca_id]}),
            "certificate_authority_ids",
            agent,
        ),
        (
            json!({"hostname": host, "terminate_at": "agent", "rules": rules}),
            "rules",
            agent,
        ),
        (
            json!({"hostname": host, "rules": rules}),
            "rules",
            "trusts no CA",
        ),
        (
            json!({"hostname": host, "certificate_authority_ids": [ca_id], "rules": bad_rules}),
            "rules",
            "maybe",
        ),
        (
            json!({"hostname": host, "certificate_authority_ids": ["ca_gone"]}),
            "certificate_authority_ids",
            "no certificate authority ca_gone exists",
        ),
        (
            json!({"hostname": host, "certificate_authority_ids": eleven}),
            "certificate_authority_ids",
            "at most 10",
        ),
        (
            json!({"hostname": host, "pool": "yes"}),
            "pool",
            "invalid type",
        ),
    ] {
        admin
            .refuses(POST, path, None, Some(body), invalid(field, words))
            .await;
    }
    let passthrough = json!({"hostname": "raw.example.com", "kind": "tls", "terminate_at": "agent", "pool": true});
    make(admin, path, passthrough).await;
    let list = expect(admin.send(GET, path, None).await, StatusCode::OK);
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(list["next_page_uri"], Value::Null);

    // The CA is in use: its deletion names the endpoint.
    let in_use = refusal(
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        None,
        "is used by endpoint ep_",
    );
    let ca_uri = format!("/certificate_authorities/{ca_id}");
    let (_, refused) = admin.refuses(DELETE, &ca_uri, None, None, in_use).await;
    assert_eq!(refused["details"]["endpoints"], json!([id]));

    let uri = format!("/endpoints/{id}");
    let (status, headers, _) = admin.call(GET, &uri, None, None).await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "\"1\""));
    let unshared = json!({"pool": true, "certificate_authority_ids": [], "rules": ""});
    let changed = expect(
        admin.send(PATCH, &uri, Some(unshared)).await,
        StatusCode::OK,
    );
    assert_eq!(
        (changed["pool"].as_bool(), changed["version"].as_i64()),
        (Some(true), Some(2))
    );
    assert_eq!(changed["certificate_authority_ids"], json!([]));
    let taken = refusal(
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        "raw.example.com",
    );
    admin
        .refuses(
            PATCH,
            &uri,
            None,
            Some(json!({"hostname": "raw.example.com"})),
            taken,
        )
        .await;
    let blank_rules = json!({"terminate_at": "agent", "rules": "  "});
    expect(
        admin.send(PATCH, &uri, Some(blank_rules)).await,
        StatusCode::OK,
    );
    let stale = refusal(
        StatusCode::PRECONDITION_FAILED,
        "MOAT_VERSION_MISMATCH",
        None,
        "not 1",
    );
    admin
        .refuses(DELETE, &uri, Some("\"1\""), None, stale)
        .await;
    expect(admin.send(DELETE, &uri, None).await, StatusCode::NO_CONTENT);
    expect(
        admin.send(DELETE, &ca_uri, None).await,
        StatusCode::NO_CONTENT,
    );
}

async fn reserved_domains(admin: &Admin) {
    let path = "/reserved_domains";
    let body = json!({"hostname": "ci.example.com.", "agent": "ci-runner-1", "description": "CI"});
    let (headers, reserved) = make(admin, path, body).await;
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(
        (reserved["hostname"].as_str(), reserved["agent"].as_str()),
        (Some("ci.example.com"), Some("ci-runner-1"))
    );
    let taken = refusal(
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        Some("hostname"),
        "reserved for agent ci-runner-1",
    );
    admin
        .refuses(
            POST,
            path,
            None,
            Some(json!({"hostname": "ci.example.com", "agent": "other"})),
            taken,
        )
        .await;
    for (body, field, words) in [
        (
            json!({"hostname": "*.example.com", "agent": "a"}),
            "hostname",
            "has a wildcard",
        ),
        (
            json!({"hostname": "x.example.com", "agent": "ci-*"}),
            "agent",
            "name one agent",
        ),
        (
            json!({"hostname": "x.example.com", "agent": ""}),
            "agent",
            "is empty",
        ),
        (json!({"hostname": "x.example.com"}), "agent", "is required"),
    ] {
        admin
            .refuses(POST, path, None, Some(body), invalid(field, words))
            .await;
    }
    let list = expect(admin.send(GET, path, None).await, StatusCode::OK);
    assert_eq!(list["reserved_domains"], json!([reserved]));
    let uri = reserved["uri"].as_str().unwrap();
    assert_eq!(
        expect(admin.send(GET, uri, None).await, StatusCode::OK),
        reserved
    );
    let (status, _, _) = admin.call(DELETE, uri, Some("\"1\""), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect(admin.send(GET, uri, None).await, StatusCode::NOT_FOUND);
}

async fn agent_grants(admin: &Admin) {
    let path = "/agent_grants";
    let hostnames = ["*.CI.example.com", "status.example.com", "*.ci.example.com"];
    let (_, grant) = make(
        admin,
        path,
        json!({"agents": "ci-*", "hostnames": hostnames}),
    )
    .await;
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
            "other than one leading",
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
        admin
            .refuses(POST, path, None, Some(body), invalid(field, words))
            .await;
    }
    let list = expect(
        admin.send(GET, "/agent_grants?limit=10", None).await,
        StatusCode::OK,
    );
    assert_eq!(list["agent_grants"], json!([grant]));
    let uri = grant["uri"].as_str().unwrap();
    let (status, headers, read) = admin.call(GET, uri, None, None).await;
    assert_eq!(
        (status, &read, etag(&headers)),
        (StatusCode::OK, &grant, "\"1\"")
    );
    expect(admin.send(DELETE, uri, None).await, StatusCode::NO_CONTENT);
    expect(admin.send(DELETE, uri, None).await, StatusCode::NOT_FOUND);
}

async fn join_tokens(admin: &Admin) {
    let path = "/join_tokens";
    let body = json!({"grant": ["*.A.example.com"], "ttl": "2h", "description": "laptop"});
    let (headers, token) = make(admin, path, body).await;
    assert_eq!(
        headers["cache-control"], "no-store",
        "the token's text is shown once"
    );
    let id = token["id"].as_str().unwrap().to_owned();
    assert_eq!(token["token"], format!("moat-join-1.test-{id}"));
    assert_eq!(
        (&token["grant"], &token["used_at"]),
        (&json!(["*.a.example.com"]), &Value::Null)
    );
    let (_, unused) = make(admin, path, json!({})).await;
    assert_eq!(unused["grant"], json!([]), "{unused}");
    for (body, field, words) in [
        (json!({"ttl": "0s"}), "ttl", "ttl is zero"),
        (json!({"ttl": "soon"}), "ttl", "is not a duration"),
        (json!({"grant": ["*"]}), "grant", "a wildcard other than"),
        (json!({"grant": ["."]}), "grant", "names no domain"),
        (json!({"secret": "x"}), "secret", "unknown field"),
    ] {
        admin
            .refuses(POST, path, None, Some(body), invalid(field, words))
            .await;
    }
    let refused = refusal(
        StatusCode::BAD_REQUEST,
        "MOAT_REFUSED",
        None,
        "makes no join tokens",
    );
    admin
        .refuses(
            POST,
            path,
            None,
            Some(json!({"description": REFUSE_TOKEN})),
            refused,
        )
        .await;

    let list = expect(admin.send(GET, path, None).await, StatusCode::OK);
    let listed = &list["join_tokens"][0];
    assert_eq!(listed["id"], id.as_str());
    assert!(
        listed.get("token").is_none(),
        "no secret in lists: {listed}"
    );
    let uri = format!("/join_tokens/{id}");
    assert_eq!(
        &expect(admin.send(GET, &uri, None).await, StatusCode::OK),
        listed
    );

    // Redeemed, it stays as the record of the join; unused, it can be revoked.
    let secret = "0".repeat(64);
    let redeemed = admin
        .store
        .redeem_join_token(&id, &secret, "laptop-7", unix_now())
        .await;
    assert!(matches!(redeemed, Ok(Ok(_))), "{redeemed:?}");
    assert_eq!(admin.send(GET, &uri, None).await.1["used_by"], "laptop-7");
    let spent = refusal(
        StatusCode::CONFLICT,
        "MOAT_CONFLICT",
        None,
        "a used token is spent",
    );
    admin.refuses(DELETE, &uri, None, None, spent).await;
    let unused = unused["uri"].as_str().unwrap();
    expect(
        admin.send(DELETE, unused, None).await,
        StatusCode::NO_CONTENT,
    );
    expect(
        admin.send(DELETE, unused, None).await,
        StatusCode::NOT_FOUND,
    );
}

async fn tunnel_sessions(admin: &Admin) {
    let now = unix_now();
    let store = &admin.store;
    store
        .open_session("s-live", "laptop-7", "edge-a", now, 60)
        .await
        .unwrap();
    store
        .open_session("s-lapsed", "laptop-8", "edge-b", now - 120, 60)
        .await
        .unwrap();
    let list = expect(
        admin.send(GET, "/tunnel_sessions", None).await,
        StatusCode::OK,
    );
    let sessions = list["tunnel_sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "only live leases: {list}");
    assert_eq!(
        (sessions[0]["agent"].as_str(), sessions[0]["edge"].as_str()),
        (Some("laptop-7"), Some("edge-a"))
    );
    assert_eq!(
        expect(
            admin.send(GET, "/tunnel_sessions/s-live", None).await,
            StatusCode::OK
        ),
        sessions[0]
    );
    expect(
        admin.send(GET, "/tunnel_sessions/s-lapsed", None).await,
        StatusCode::NOT_FOUND,
    );
    expect(
        admin.send(DELETE, "/tunnel_sessions/s-live", None).await,
        StatusCode::NO_CONTENT,
    );
    let renewed = store
        .renew_session("s-live", "edge-a", now + 1, 60)
        .await
        .unwrap();
    assert!(!renewed, "its edge learns it at the next renewal");
    let missing = refusal(
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "no tunnel session s-live",
    );
    admin
        .refuses(DELETE, "/tunnel_sessions/s-live", None, None, missing)
        .await;
}

async fn requests_the_api_refuses_whole(admin: &Admin) {
    let missing = refusal(
        StatusCode::NOT_FOUND,
        "MOAT_NOT_FOUND",
        None,
        "GET /openapi.json lists",
    );
    admin.refuses(GET, "/tunnels", None, None, missing).await;
    let wrong = refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "MOAT_METHOD_NOT_ALLOWED",
        None,
        "takes GET, POST",
    );
    let (headers, _) = admin
        .refuses(Method::PUT, "/endpoints", None, Some(json!({})), wrong)
        .await;
    assert_eq!(headers["allow"], "GET, POST");
    let wrong = refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "MOAT_METHOD_NOT_ALLOWED",
        None,
        "takes GET, DELETE",
    );
    let (headers, _) = admin
        .refuses(POST, "/tunnel_sessions/s-1", None, Some(json!({})), wrong)
        .await;
    assert_eq!(headers["allow"], "GET, DELETE");
}
