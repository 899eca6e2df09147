//! The inspector's JSON API (ngrok's paths): what it captured, as the upstream received it;
//! filters alone and combined; replay with changes, delivered to the upstream as the original
//! client and judged by the rules again; refused handshakes; the limits; and the refusal of
//! requests from other sites.

use serde_json::{Value, json};

use super::{Inspected, inspector_url};
use crate::common::Scratch;
use crate::gateway_support::{curl, moat_output};

#[test]
fn requests_are_captured_as_the_upstream_received_them_and_replayed_as_their_client() {
    let scratch = Scratch::new();
    let inspected = Inspected::start(scratch.path(), &[]);
    assert_eq!(inspected.api("/api/requests/http").1["requests"], json!([]));

    // alice claims another identity in a header: the upstream and the inspector see hers.
    let (status, _) = inspected.request(
        Some("alice"),
        "/hello?x=1",
        &[
            "-H",
            "X-Mode: original",
            "-H",
            "Moat-Client-Subject: CN=admin",
        ],
    );
    assert_eq!(status, 200);
    let (status, _) = inspected.request(
        Some("alice"),
        "/items",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"n":1}"#,
        ],
    );
    assert_eq!(status, 200);
    let (status, _) = inspected.request(Some("bob"), "/admin/panel", &[]);
    assert_eq!(status, 403, "the admins rule refuses bob");
    let (status, _) = inspected.request(None, "/hello", &[]);
    assert_eq!(
        status, 403,
        "--client-auth request: no certificate, no entry"
    );

    let all = inspected.captured("", 4);
    assert_eq!(all.len(), 4);
    let paths: Vec<&str> = all.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/hello", "/admin/panel", "/items", "/hello?x=1"],
        "newest first"
    );
    let statuses: Vec<u64> = all.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [403, 403, 200, 200]);
    assert_eq!(all[1]["rule"], "admins");
    assert_eq!(all[1]["forwarded"], false);
    assert_eq!(all[1]["client"]["subject"], "CN=bob");
    assert_eq!(all[0]["client"], Value::Null);

    // The detail: headers as the upstream received them, the body, the certificate, TLS.
    let hello = &all[3];
    let id = hello["id"].as_str().unwrap();
    let (status, detail) = inspected.api(&format!("/api/requests/http/{id}"));
    assert_eq!(status, 200);
    let received = inspected
        .upstream
        .wait_for("alice's /hello", |r| r.target == "/hello?x=1");
    assert_eq!(received.header("moat-client-subject"), Some("CN=alice"));
    assert_eq!(
        detail["request"]["headers"]["moat-client-subject"],
        json!(["CN=alice"])
    );
    assert_eq!(detail["request"]["headers"]["x-mode"], json!(["original"]));
    for (name, _) in &received.headers {
        assert!(
            detail["request"]["headers"].get(name).is_some(),
            "the upstream got {name}, the inspector does not show it"
        );
    }
    assert_eq!(detail["client"]["issuer"], "CN=Client CA");
    assert_eq!(detail["client"]["serial"], "02");
    assert!(
        detail["client"]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(detail["tls"]["version"], "TLSv1.3");
    assert!(
        detail["tls"]["cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_")
    );
    assert_eq!(detail["tls"]["sni"], "localhost");
    assert_eq!(detail["response"]["status_code"], 200);
    assert_eq!(
        detail["response"]["body"]["data"],
        r#"{"seen":"/hello?x=1"}"#
    );
    let items = &all[2];
    let (_, items) = inspected.api(&format!(
        "/api/requests/http/{}",
        items["id"].as_str().unwrap()
    ));
    assert_eq!(items["request"]["body"]["data"], r#"{"n":1}"#);
    assert_eq!(items["request"]["body"]["size"], 7);
    assert_eq!(items["method"], "POST");

    // Filters, alone and together.
    for (query, expected) in [
        ("subject=alice", vec!["/items", "/hello?x=1"]),
        ("subject=CN%3DBOB", vec!["/admin/panel"]),
        ("subject=-", vec!["/hello"]),
        ("status=4xx", vec!["/hello", "/admin/panel"]),
        ("status=200", vec!["/items", "/hello?x=1"]),
        ("path=/admin", vec!["/admin/panel"]),
        ("method=POST", vec!["/items"]),
        ("subject=alice&path=hello", vec!["/hello?x=1"]),
        ("subject=alice&status=4xx", vec![]),
        (
            "min_ms=0&max_ms=60000&status=2xx&subject=alice",
            vec!["/items", "/hello?x=1"],
        ),
        ("max_ms=0", vec![]),
        ("limit=1", vec!["/hello"]),
    ] {
        let (status, body) = inspected.api(&format!("/api/requests/http?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        let paths: Vec<&str> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, expected, "{query}");
    }
    let (status, problem) = inspected.api("/api/requests/http?status=9xx");
    assert_eq!(status, 400);
    assert!(
        problem["msg"].as_str().unwrap().contains("status"),
        "{problem}"
    );

    // Replay with changes: the upstream gets the changed request, as alice whatever it says.
    let (status, replayed) = inspected.replay(&json!({
        "id": id,
        "modify": {
            "headers": {
                "X-Mode": "replayed",
                "Moat-Client-Subject": "CN=mallory",
                "X-Forwarded-For": "10.6.6.6",
            },
            "method": "PUT",
            "body": "changed body",
        }
    }));
    assert_eq!(status, 201, "{replayed}");
    assert_eq!(replayed["replay_of"], id);
    assert_eq!(replayed["status"], 200);
    let received = inspected
        .upstream
        .wait_for("the replay", |r| r.header("x-mode") == Some("replayed"));
    assert_eq!(received.method, "PUT");
    assert_eq!(received.target, "/hello?x=1");
    assert_eq!(received.body, b"changed body");
    assert_eq!(received.header("moat-client-subject"), Some("CN=alice"));
    assert_eq!(received.header("x-forwarded-for"), Some("127.0.0.1"));
    let listed = inspected.captured("", 5);
    assert_eq!(
        listed[0]["id"], replayed["id"],
        "the replay is listed first"
    );

    // A plain replay sends the captured request again, unchanged.
    let before = inspected.upstream.received().len();
    let (status, _) = inspected.replay(&json!({ "id": items["id"], "tunnel_name": "http" }));
    assert_eq!(status, 201);
    let again = &inspected.upstream.received()[before];
    assert_eq!(
        (again.method.as_str(), again.target.as_str()),
        ("POST", "/items")
    );
    assert_eq!(again.body, br#"{"n":1}"#);

    // The rules judge a replay again: bob's request sent to alice's path is refused, and
    // alice's is allowed.
    let bob_hello = {
        let (status, _) = inspected.request(Some("bob"), "/hello", &[]);
        assert_eq!(status, 200);
        inspected.captured("subject=bob&path=/hello", 1)[0]["id"].clone()
    };
    let before = inspected.upstream.received().len();
    let (status, refused) =
        inspected.replay(&json!({ "id": bob_hello, "modify": { "path": "/admin/panel" } }));
    assert_eq!(status, 201);
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["rule"], "admins");
    assert_eq!(
        inspected.upstream.received().len(),
        before,
        "the upstream saw nothing"
    );
    let (_, allowed) = inspected.replay(&json!({ "id": id, "modify": { "path": "/admin/x" } }));
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["rule"], "admins");

    // Bad replays say what is wrong.
    for (body, status, word) in [
        (json!({ "id": "nope" }), 404, "nope"),
        (
            json!({ "id": id, "modify": { "path": "http://elsewhere/" } }),
            400,
            "modify.path",
        ),
        (json!({ "id": id, "colour": 1 }), 400, "colour"),
    ] {
        let (got, problem) = inspected.replay(&body);
        assert_eq!(got, status, "{body}: {problem}");
        assert!(problem["msg"].as_str().unwrap().contains(word), "{problem}");
    }

    // Refused handshakes never become requests; they are listed with the reason.
    assert_ne!(inspected.refused_handshake(), 0);
    let mut handshakes = Value::Null;
    crate::gateway_support::wait_until(
        "the refused handshake",
        std::time::Duration::from_secs(10),
        || {
            handshakes = inspected.api("/api/handshakes/refused").1["handshakes"].clone();
            handshakes.as_array().is_some_and(|list| !list.is_empty())
        },
    );
    assert_eq!(handshakes[0]["reason"], "unknown_ca");
    assert_eq!(handshakes[0]["client"]["subject"], "CN=stranger");
    assert_eq!(handshakes[0]["sni"], "localhost");

    // ngrok's tunnels and status.
    let (_, tunnels) = inspected.api("/api/tunnels");
    assert_eq!(tunnels["tunnels"][0]["name"], "http");
    assert_eq!(
        tunnels["tunnels"][0]["config"]["addr"],
        format!("http://{}", inspected.upstream.address)
    );
    assert_eq!(
        tunnels["tunnels"][0]["public_url"],
        format!("https://localhost:{}", inspected.moat.port())
    );
    let (_, status) = inspected.api("/api/status");
    assert!(
        status["requests"]["total"].as_u64().unwrap() >= 9,
        "{status}"
    );
    assert!(
        status["requests"]["last_minute"].as_u64().unwrap() >= 9,
        "{status}"
    );
    assert!(status["requests"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert_eq!(status["refused_handshakes"], 1);

    // DELETE forgets everything.
    let (status, _) = inspected.api_with(
        &["-X", "DELETE"],
        &format!("{}/api/requests/http", inspected.inspector),
    );
    assert_eq!(status, 204);
    assert_eq!(inspected.api("/api/requests/http").1["requests"], json!([]));
    assert_eq!(
        inspected.api("/api/handshakes/refused").1["handshakes"],
        json!([])
    );
}

#[test]
fn what_is_kept_is_bounded_by_count_and_body_size() {
    let scratch = Scratch::new();
    let inspected = Inspected::start(
        scratch.path(),
        &["--inspect-max-requests", "3", "--inspect-max-body", "16"],
    );
    for n in 0..5 {
        let (status, _) = inspected.request(Some("alice"), &format!("/n/{n}"), &[]);
        assert_eq!(status, 200);
    }
    let kept = inspected.captured("", 3);
    let paths: Vec<&str> = kept.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/n/4", "/n/3", "/n/2"], "the two oldest are gone");

    let body = "x".repeat(100);
    let (status, _) = inspected.request(Some("alice"), "/upload", &["--data-binary", &body]);
    assert_eq!(status, 200);
    let upload = inspected.captured("path=/upload", 1)[0].clone();
    let (_, detail) = inspected.api(&format!(
        "/api/requests/http/{}",
        upload["id"].as_str().unwrap()
    ));
    assert_eq!(detail["request"]["body"]["size"], 100);
    assert_eq!(detail["request"]["body"]["captured"], 16);
    assert_eq!(detail["request"]["body"]["truncated"], true);
    assert_eq!(detail["request"]["body"]["data"], "x".repeat(16));
    let received = inspected
        .upstream
        .wait_for("the upload", |r| r.target == "/upload");
    assert_eq!(
        received.body.len(),
        100,
        "the limit bounds the copy, not the request"
    );

    // A truncated body cannot be replayed as captured; a body given in the changes can.
    let (status, problem) = inspected.replay(&json!({ "id": upload["id"] }));
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["msg"].as_str().unwrap().contains("16 of 100"),
        "{problem}"
    );
    let (status, _) =
        inspected.replay(&json!({ "id": upload["id"], "modify": { "body": "short" } }));
    assert_eq!(status, 201);
    let (_, status) = inspected.api("/api/status");
    assert_eq!(status["limits"]["max_requests"], 3);
    assert_eq!(status["limits"]["max_body"], 16);
    assert_eq!(status["requests"]["kept"], 3);
}

#[test]
fn the_inspector_answers_its_own_page_and_local_tools_only() {
    let scratch = Scratch::new();
    let inspected = Inspected::start(scratch.path(), &[]);
    let url = format!("{}/api/requests/http", inspected.inspector);
    let port = inspected.inspector.rsplit(':').next().unwrap();

    // DNS rebinding: a page at attacker.example that resolves to 127.0.0.1 sends its own Host.
    let (status, problem) = inspected.api_with(&["-H", "Host: attacker.example"], &url);
    assert_eq!(status, 403, "{problem}");
    let localhost = format!("Host: localhost:{port}");
    assert_eq!(inspected.api_with(&["-H", &localhost], &url).0, 200);
    // Another site's page, by fetch or by form.
    for args in [
        vec!["-H", "Origin: http://attacker.example"],
        vec![
            "-X",
            "POST",
            "-H",
            "Origin: http://attacker.example",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ],
        vec!["-X", "DELETE", "-H", "Origin: null"],
    ] {
        assert_eq!(inspected.api_with(&args, &url).0, 403, "{args:?}");
    }
    let same_origin = format!("Origin: {}", inspected.inspector);
    assert_eq!(inspected.api_with(&["-H", &same_origin], &url).0, 200);
    // A simple (no preflight) POST is not a replay.
    let (status, _) = inspected.api_with(&["-X", "POST", "--data", "id=1"], &url);
    assert_eq!(status, 415);

    // The page: its own files only, a policy that runs nothing else.
    let (code, head, _) = curl(
        scratch.path(),
        &["-sS", "-D", "-", "-o", "/dev/null", &inspected.inspector],
    );
    assert_eq!(code, 0);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[test]
fn the_inspector_listens_where_asked_and_only_on_loopback_unless_allowed() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    // Not on an address other machines reach without saying so.
    let output = moat_output(
        dir,
        &[
            "http",
            "8080",
            "--listen",
            "127.0.0.1:0",
            "--inspect",
            "0.0.0.0:0",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--inspect 0.0.0.0:0") && stderr.contains("--inspect-allow-remote"),
        "{stderr}"
    );
    // An address given explicitly that is taken is an error, not a silent fallback.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let output = moat_output(
        dir,
        &[
            "http",
            "8080",
            "--listen",
            "127.0.0.1:0",
            "--inspect",
            &taken,
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );
    // off: no inspector at all.
    let moat = crate::gateway_support::Moat::start(
        dir,
        &[
            "http",
            "8080",
            "--listen",
            "127.0.0.1:0",
            "--inspect",
            "off",
        ],
        1,
    );
    assert_eq!(inspector_url(&moat.stdout), None, "{:?}", moat.stdout);
}

/// The default address, 127.0.0.1:4040, in a network namespace of the test's own, so that no
/// other moat (or ngrok) on this machine holds it or lets it go mid-test: free, moat serves its
/// inspector there without being asked; taken, moat says so in its log and serves its endpoint
/// without one. Needs root (CI runs as root) for `unshare --net`.
#[test]
fn the_default_address_is_used_when_free_and_skipped_with_a_warning_when_taken() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let script = r#"
set -eu
ip link set lo up
wait_for() {
  for _ in $(seq 200); do grep -q "$2" "$1" && return 0; sleep 0.05; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; return 1
}
"$MOAT" http 9 --listen 127.0.0.1:8080 >free.out 2>free.log &
moat=$!
wait_for free.out 'listening on'
curl -sS --max-time 5 http://127.0.0.1:4040/api/status >free-status.json
kill "$moat"; wait "$moat" || true
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 4040)); s.listen(); print("held", flush=True); time.sleep(30)' >holder.out &
holder=$!
wait_for holder.out held
"$MOAT" http 9 --listen 127.0.0.1:8080 >taken.out 2>taken.log &
moat=$!
wait_for taken.out 'listening on'
# Nothing listens on the upstream's port 9: a 502 is moat's endpoint answering.
curl -sS -k -o /dev/null -w '%{http_code}' --max-time 5 https://127.0.0.1:8080/ >taken-endpoint.txt || true
kill "$moat" "$holder"; wait || true
"#;
    let output = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .current_dir(dir)
        .env("MOAT", env!("CARGO_BIN_EXE_moat"))
        .env("MOAT_HOME", dir.join("home"))
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare runs");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(
        output.status.success(),
        "the script failed (unshare --net needs root): {}\nfree.log: {}\ntaken.log: {}",
        String::from_utf8_lossy(&output.stderr),
        read("free.log"),
        read("taken.log")
    );

    assert!(
        read("free.out").contains("moat: request inspector on http://127.0.0.1:4040\n"),
        "{}",
        read("free.out")
    );
    let status: Value = serde_json::from_str(&read("free-status.json")).unwrap();
    assert_eq!(status["endpoints"][0]["name"], "http", "{status}");

    let taken_out = read("taken.out");
    assert!(!taken_out.contains("request inspector"), "{taken_out}");
    let log = read("taken.log");
    assert!(
        log.contains("WARN")
            && log.contains("the request inspector cannot listen; running without it")
            && log.contains("127.0.0.1:4040"),
        "{log}"
    );
    assert_eq!(read("taken-endpoint.txt"), "502");
}
