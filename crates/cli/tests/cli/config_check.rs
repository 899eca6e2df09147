//! `moat config check FILE`: "ok: N endpoints" (after a line each on [edge] and [agent]), or
//! every error with its field and exit 1.

use std::process::Command;

fn check(dir: &std::path::Path, file: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["config", "check", file])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_valid_file_reports_its_endpoint_count() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::create_dir(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/ca.pem"), "not checked here").unwrap();
    std::fs::write(
        dir.join("conf/moat.toml"),
        r#"
[[endpoints]]
name = "app"
kind = "http"
upstream = "http://127.0.0.1:8080"
mutual_tls_cas = ["ca.pem"]   # relative to the file, not to the working directory

[[endpoints]]
name = "db"
kind = "tls"
listen = "0.0.0.0:5433"
upstream = "localhost:5432"
mutual_tls_cas = ["ca.pem"]
[endpoints.timeouts]
idle = "5m"
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "conf/moat.toml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "ok: 2 endpoints\n");
}

#[test]
fn an_invalid_file_lists_every_error_with_its_field_and_exits_1() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("moat.toml"),
        r#"
[[endpoints]]
name = "app"
kind = "http"
upstream = "8080"

[[endpoints]]
name = "api"
kind = "http"
upstream = "localhost:x"
tls_min_version = "1.0"
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "moat.toml");
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "moat: moat.toml: endpoints[1].upstream: \"localhost:x\" is not a port, host:port or URL\n\
         moat.toml: endpoints[1].tls_min_version: \"1.0\" is not a supported TLS version; use \"1.2\" or \"1.3\"\n"
    );
}

#[test]
fn a_missing_file_is_named() {
    let scratch = tempfile::tempdir().unwrap();
    let (code, _, stderr) = check(scratch.path(), "nope.toml");
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("moat: nope.toml: cannot read the configuration file:"),
        "{stderr}"
    );
}

/// `moat config check` of an http endpoint "app" with the keys `lines` fails with just `error`.
fn assert_refused(dir: &std::path::Path, lines: &str, error: &str) {
    std::fs::write(
        dir.join("moat.toml"),
        format!("[[endpoints]]\nname = \"app\"\nkind = \"http\"\n{lines}\n"),
    )
    .unwrap();
    let (code, _, stderr) = check(dir, "moat.toml");
    assert_eq!(code, Some(1), "{lines}");
    assert_eq!(stderr, format!("moat: moat.toml: {error}\n"), "{lines}");
}

#[test]
fn a_key_of_the_wrong_type_says_what_it_takes() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    for (line, error) in [
        (
            "upstream = [1]",
            "endpoints[0].upstream: expected a port number or a string such as \"8080\" or \
             \"http://127.0.0.1:8080\", found an array",
        ),
        (
            "upstream = true",
            "endpoints[0].upstream: expected a port number or a string such as \"8080\" or \
             \"http://127.0.0.1:8080\", found true",
        ),
        (
            "upstream = 8080\ntls_min_version = {}",
            "endpoints[0].tls_min_version: expected \"1.2\" or \"1.3\", found a table",
        ),
        (
            "upstream = 8080\ncrt = 5\nkey = \"server.key\"",
            "endpoints[0].crt: invalid type: integer `5`, expected path string",
        ),
    ] {
        assert_refused(dir, line, error);
    }
}

#[test]
fn a_pem_pasted_where_its_path_belongs_is_not_printed_back() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key_pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBFAKEFAKEFAKE\n-----END PRIVATE KEY-----\n";
    std::fs::write(dir.join("server.crt"), "not checked here").unwrap();
    assert_refused(
        dir,
        &format!("upstream = 8080\ncrt = \"server.crt\"\nkey = \"\"\"{key_pem}\"\"\""),
        "endpoints[0].key: holds the contents of a PEM file (-----BEGIN PRIVATE KEY-----...), \
         not a path; give the path of the file that holds it",
    );
}

#[test]
fn a_tls_endpoint_whose_rules_read_the_connection_is_noted_as_not_resuming() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::write(dir.join("ca.pem"), "not checked here").unwrap();
    let endpoint = |name: &str, rule: &str| {
        format!(
            "[[endpoints]]\nname = \"{name}\"\nkind = \"tls\"\nlisten = \"127.0.0.1:0\"\n\
             upstream = 5432\nmutual_tls_cas = [\"ca.pem\"]\n\
             [[endpoints.rules]]\nname = \"r\"\naction = \"allow\"\n{rule}\n"
        )
    };
    std::fs::write(
        dir.join("moat.toml"),
        [
            endpoint("by-name", "include = [{ common_name = \"alice\" }]"),
            endpoint("by-address", "require = [{ source_ip = \"10.0.0.0/8\" }]"),
        ]
        .concat(),
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "moat.toml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "note: moat.toml: endpoints[1] (by-address): no session resumption: its rules read the \
         client's address (source_ip) or run CEL expressions, which a resumed handshake would \
         skip, so every connection makes a full handshake\nok: 2 endpoints\n"
    );
}

#[test]
fn a_file_list_given_one_string_shows_the_list_to_write() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let ca_pem = "-----BEGIN CERTIFICATE-----\nMIIBbTCCAROgAwIBAgIUOtgK\n-----END CERTIFICATE-----";
    for (line, error) in [
        (
            "mutual_tls_cas = \"cas.pem\"".to_owned(),
            "endpoints[0].mutual_tls_cas: expected a list of files, found a string; write \
             [\"cas.pem\"]",
        ),
        (
            format!("mutual_tls_cas = [\"cas.pem\"]\ncrls = \"\"\"{ca_pem}\"\"\""),
            "endpoints[0].crls: expected a list of files, found the contents of a PEM file; give \
             the path of the file that holds it, as [\"FILE\"]",
        ),
    ] {
        assert_refused(dir, &format!("upstream = 8080\n{line}"), error);
    }
}

#[test]
fn edge_and_agent_tables_are_checked_and_summarised() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::write(dir.join("agents.pem"), "not checked here").unwrap();
    std::fs::write(
        dir.join("moat.toml"),
        r#"
[agent]
edge = "edge.example.com:4443"

[[endpoints]]
name = "app"
kind = "http"
upstream = "8080"
domain = "app.tunnel.example.com"
publish = true
pool = true

[[endpoints]]
name = "db"
kind = "tls"
upstream = "5432"
publish = true
terminate_at = "agent"

[edge]
listen = "0.0.0.0:443"
agent_names = ["edge.example.com"]
domain = "*.tunnel.example.com"
agent_cas = "agents.pem"

[[edge.grants]]
agents = "ci-*"
hostnames = ["*.ci.example.com", "status.example.com"]
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "moat.toml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "edge: clients on 0.0.0.0:443, agents on 0.0.0.0:4443, tokens name edge.example.com, \
         domain *.tunnel.example.com, agents' own CAs, grants \
         ci-*=*.ci.example.com,status.example.com, heartbeat tolerance 15s\n\
         agent: edge edge.example.com:4443, publishes app (TLS ends at the edge, pooled), \
         db (TLS ends at the agent)\n\
         ok: 2 endpoints, [edge], [agent]\n"
    );

    // A file for the edge alone has no endpoints.
    std::fs::write(
        dir.join("edge.toml"),
        "[edge]\nheartbeat_tolerance = \"1m\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "edge.toml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "edge: clients on 0.0.0.0:443, agents on 0.0.0.0:4443, no domain, no grants but join \
         tokens', heartbeat tolerance 60s\n\
         ok: 0 endpoints, [edge]\n"
    );
}

#[test]
fn an_invalid_edge_or_agent_table_names_the_field() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::write(
        dir.join("moat.toml"),
        r#"
[agent]
edge = "edge.example.com"

[[endpoints]]
name = "app"
kind = "http"
upstream = "8080"
publish = true

[edge]
domain = "*.tunnel.example.com"

[[edge.grants]]
agents = "ci-*"
hostnames = ["ok.example.com", "*.com"]
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir, "moat.toml");
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "moat: moat.toml: edge.grants[0].hostnames[1]: \"*.com\" covers a whole top-level \
         domain; write e.g. \"*.example.com\"\n\
         moat.toml: agent.edge: \"edge.example.com\" is not HOST:PORT; give the edge's agent \
         listener, e.g. \"edge.example.com:4443\"\n"
    );
}
