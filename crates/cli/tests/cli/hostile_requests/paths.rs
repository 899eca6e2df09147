//! Path spellings (percent-encoding, dot segments, merged slashes) against nginx, and the
//! canonical path `moat verify` shows the rules judging.

use crate::gateway_support;

use super::{raw_exchange, setup, status_of};

use std::path::Path;

use gateway_support::{Moat, curl, start_nginx};

/// nginx chooses its location from the path it resolved itself and names it in the body.
const NGINX_LOCATIONS: &str = r#"
location /public/ { return 200 "PUBLIC uri=$uri\n"; }
location /admin/ { return 200 "ADMIN uri=$uri\n"; }
location /cel/secret { return 200 "CELSECRET uri=$uri\n"; }
location / { return 200 "OTHER uri=$uri\n"; }
"#;

/// `GET TARGET` with `Connection: close`, sent byte for byte as written.
fn get_raw(dir: &Path, port: u16, client: Option<&str>, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_exchange(dir, port, client, request.as_bytes())
}

#[test]
fn every_path_form_is_refused_or_reaches_the_upstream_as_a_path_the_rules_allowed() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let nginx = start_nginx(dir.path(), NGINX_LOCATIONS);
    let upstream = format!("http://127.0.0.1:{}", nginx.port);
    let moat = Moat::serve_mtls(
        dir.path(),
        "http",
        &upstream,
        &["--policy", "policy.toml", "--audit-log", "audit.jsonl"],
    );
    let port = moat.port();

    // Without a certificate only /public/* may be reached; each form is sent byte for byte.
    let forms = [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2E/admin/x",
        "/public/%2e%2E/admin/x",
        "/public/.%2e/admin/x",
        "/public/%2e./admin/x",
        "/public/x/../../admin/x",
        "/public/./../admin/x",
        "/public//../admin/x",
        "//admin/x",
        "/./admin/x",
        "/public/%2e%2e/%61dmin/x",
        "/public/..;/admin/x",
        "/public/..;x=1/admin/x",
        "/admin;public/x",
        "/public/%2e%2e%2fadmin/x",
        "/public%2f..%2fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..%5Cadmin%5Cx",
        "/public\\..\\admin\\x",
        "/public/%252e%252e/admin/x",
        "/public/%25%32%65%25%32%65/admin/x",
        "/public/%252E%252E%252Fadmin/x",
        "/public/..%00/admin/x",
        "/public/%00/../admin/x",
        "/public/%c0%ae%c0%ae/admin/x",
        "/public/%e0%80%ae%e0%80%ae/admin/x",
        "/PUBLIC/../admin/x",
        "/public/x/..//admin/x",
        "/public/..",
        "/public/%2e%2e",
        "/admin/x",
    ];
    let mut statuses = Vec::new();
    for form in forms {
        let response = get_raw(dir.path(), port, None, form);
        let status = status_of(&response);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        match status {
            400 | 403 => {}
            200 => assert!(
                body.starts_with("PUBLIC uri=/public/"),
                "{form:?} reached nginx outside /public/: {body:?}"
            ),
            other => panic!("{form:?}: unexpected status {other}: {response}"),
        }
        statuses.push(status);
    }
    // The table exercises each outcome: canonicalised and refused by rule, refused as malformed,
    // and let through to a public path.
    for expected in [200, 400, 403] {
        assert!(
            statuses.contains(&expected),
            "no {expected} in {statuses:?}"
        );
    }

    // The same path with a certificate does reach /admin/: the table could have failed.
    let response = get_raw(dir.path(), port, Some("alice"), "/public/%2e%2e/admin/x");
    assert!(response.contains("ADMIN uri=/admin/x"), "{response}");

    // HTTP/2 :path is canonicalised the same way (curl --path-as-is keeps the dot segments).
    let h2 = |client: Option<&str>, path: &str| {
        let url = format!("https://localhost:{port}{path}");
        let mut args = vec!["--http2", "--path-as-is", "--cacert", "server-ca.pem"];
        if client.is_some() {
            args.extend(["--cert", "alice.crt", "--key", "alice.key"]);
        }
        args.extend(["-w", "\n%{http_code} %{http_version}", url.as_str()]);
        let (_, out, err) = curl(dir.path(), &args);
        assert!(out.ends_with(" 2"), "not HTTP/2: {out} {err}");
        out
    };
    for path in ["/public/../admin/x", "/public/%2e%2e/admin/x", "//admin/x"] {
        let out = h2(None, path);
        assert!(out.ends_with("403 2"), "HTTP/2 {path}: {out}");
    }
    assert!(h2(Some("alice"), "/public/../admin/x").starts_with("ADMIN uri=/admin/x"));
    assert!(h2(None, "/public/%2e%2e%2fadmin/x").ends_with("400 2"));

    // req.url.path in CEL sees the canonical path too.
    for form in [
        "/cel/x/../secret",
        "/cel/%73ecret",
        "/cel//secret",
        "/cel/./secret",
    ] {
        let response = get_raw(dir.path(), port, Some("alice"), form);
        assert_eq!(status_of(&response), 403, "{form:?}: {response}");
        assert!(!response.contains("CELSECRET"), "{form:?}: {response}");
    }
    let response = get_raw(dir.path(), port, Some("alice"), "/cel/other");
    assert!(response.contains("OTHER uri=/cel/other"), "{response}");

    // The audit event and the log name the path the rules judged.
    drop(moat);
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let judged = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "http_request" && event["path"] == "/admin/x")
        .expect("an audit event for the canonical /admin/x");
    assert_eq!(judged["status"], 403);
    assert_eq!(judged["rule"], "members");
}

#[test]
fn verify_shows_the_canonical_path_the_rules_judge() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let verify = |path: &str| {
        gateway_support::moat_output(
            dir.path(),
            &[
                "verify",
                "--mutual-tls-cas",
                "cas.pem",
                "--policy",
                "policy.toml",
                "--path",
                path,
            ],
        )
    };
    let output = verify("/public/%2e%2e/admin/x");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stdout.contains(
            "path: /public/%2e%2e/admin/x -> canonical /admin/x (escaped unreserved characters \
             decoded, dot segments removed)"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("by rule \"members\""), "{stderr}");

    let output = verify("/public/..;/admin");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("REFUSED with 400: path \"/public/..;/admin\": the request path has a ';'"),
        "{stderr}"
    );

    let output = verify("/public/x");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("path: /public/x (already canonical)")
    );
}
