//! `moat.toml` parsing and validation: every key, relative paths, and errors with field paths.

use std::path::Path;
use std::time::Duration;

use moat_config::{
    ClientAuthMode, Config, ConfigError, EndpointKind, TerminateAt, TlsVersion, UpstreamScheme,
};

fn touch(dir: &Path, names: &[&str]) {
    for name in names {
        std::fs::write(dir.join(name), "placeholder").unwrap();
    }
}

fn problems(error: ConfigError) -> Vec<String> {
    error.to_string().lines().map(str::to_string).collect()
}

/// The problems a `moat.toml` holding `text` is refused with, one a line, read in a new directory
/// that holds the files `existing`; the directory too, as the messages name paths in it.
fn refusal(text: &str, existing: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), existing);
    let error = Config::from_toml_str(text, "moat.toml", dir.path()).unwrap_err();
    (dir, problems(error))
}

#[test]
fn every_key_is_read_and_relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    touch(
        dir.path(),
        &[
            "server.crt",
            "server.key",
            "a.pem",
            "b.pem",
            "ca.crl",
            "up.pem",
        ],
    );
    let text = r#"
[[endpoints]]
name = "app"
kind = "http"
listen = "127.0.0.1:9443"
domain = "app.example.com"
upstream = "https://api.internal:8443"
upstream_ca = "up.pem"
crt = "server.crt"
key = "server.key"
mutual_tls_cas = ["a.pem", "b.pem"]
crls = ["ca.crl"]
client_auth = "request"
tls_min_version = "1.3"

[endpoints.timeouts]
request_header = "2s"
idle = "1m30s"
upstream_connect = "500ms"
upstream_response = "2m"

[[endpoints]]
name = "db"
kind = "tls"
upstream = 5432
terminate_at = "agent"
mutual_tls_cas = ["a.pem"]
"#;
    let path = dir.path().join("moat.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::from_toml_file(&path).unwrap();
    assert_eq!(config.endpoints.len(), 2);

    let app = &config.endpoints[0];
    assert_eq!(app.name, "app");
    assert_eq!(app.kind, EndpointKind::Http);
    assert_eq!(app.listen, "127.0.0.1:9443".parse().unwrap());
    assert_eq!(app.domain, "app.example.com");
    assert_eq!(app.upstream.scheme, UpstreamScheme::Https);
    assert_eq!(app.upstream.host, "api.internal");
    assert_eq!(app.upstream.port, 8443);
    assert_eq!(
        app.upstream_ca.as_deref(),
        Some(dir.path().join("up.pem").as_path())
    );
    assert_eq!(
        app.crt.as_deref(),
        Some(dir.path().join("server.crt").as_path())
    );
    assert_eq!(
        app.key.as_deref(),
        Some(dir.path().join("server.key").as_path())
    );
    assert_eq!(
        app.mutual_tls_cas,
        vec![dir.path().join("a.pem"), dir.path().join("b.pem")]
    );
    assert_eq!(app.crls, vec![dir.path().join("ca.crl")]);
    assert_eq!(app.client_auth, ClientAuthMode::Request);
    assert_eq!(app.tls_min_version, TlsVersion::Tls13);
    assert_eq!(app.timeouts.request_header, Duration::from_secs(2));
    assert_eq!(app.timeouts.idle, Duration::from_secs(90));
    assert_eq!(app.timeouts.upstream_connect, Duration::from_millis(500));
    assert_eq!(app.timeouts.upstream_response, Duration::from_secs(120));

    let db = &config.endpoints[1];
    assert_eq!(db.kind, EndpointKind::Tls);
    assert_eq!(db.upstream.scheme, UpstreamScheme::Tcp);
    assert_eq!(db.upstream.host, "localhost");
    assert_eq!(db.upstream.port, 5432);
    assert_eq!(db.terminate_at, TerminateAt::Agent);
    assert_eq!(db.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(db.domain, "localhost");
    assert_eq!(db.client_auth, ClientAuthMode::RequireAndVerify);
    assert_eq!(db.tls_min_version, TlsVersion::Tls12);
    assert_eq!(db.timeouts, moat_config::Timeouts::default());
}

#[test]
fn every_field_error_is_listed_with_its_path() {
    let text = r#"
[[endpoints]]
name = "ok"
kind = "http"
upstream = "8080"

[[endpoints]]
name = "bad"
kind = "http"
listen = "localhost"
upstream = "localhost:x"
crt = "missing.crt"
mutual_tls_cas = ["ca.pem", "nope.pem"]
client_auth = "optional"
tls_min_version = "1.1"

[endpoints.timeouts]
idle = "10"
"#;
    let (dir, lines) = refusal(text, &["ca.pem"]);
    let missing = dir.path().join("missing.crt");
    let nope = dir.path().join("nope.pem");
    assert_eq!(
        lines,
        vec![
            "moat.toml: endpoints[1].listen: \"localhost\" is not an IP:port address; write e.g. \"0.0.0.0:8443\" or \"127.0.0.1:0\"".to_string(),
            "moat.toml: endpoints[1].upstream: \"localhost:x\" is not a port, host:port or URL".to_string(),
            "moat.toml: endpoints[1].key: missing; a server certificate (crt) needs its private key (key)".to_string(),
            format!("moat.toml: endpoints[1].crt: {}: no such file; check the path", missing.display()),
            format!("moat.toml: endpoints[1].mutual_tls_cas[1]: {}: no such file; check the path", nope.display()),
            "moat.toml: endpoints[1].client_auth: \"optional\" is not a client verification strategy; use \"require-and-verify\" or \"request\"".to_string(),
            "moat.toml: endpoints[1].tls_min_version: \"1.1\" is not a supported TLS version; use \"1.2\" or \"1.3\"".to_string(),
            "moat.toml: endpoints[1].timeouts.idle: \"10\" has no unit; write e.g. \"10s\" (units: ms, s, m, h)".to_string(),
        ]
    );
}

#[test]
fn unknown_keys_are_refused_per_endpoint() {
    let text = r#"
[[endpoints]]
name = "a"
kind = "http"
upstream = "8080"
upstrem = "8081"

[[endpoints]]
name = "b"
kind = "tls"
upstream = "9000"
[endpoints.timeouts]
handshake = "1s"
"#;
    let (_dir, lines) = refusal(text, &[]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("moat.toml: endpoints[0]: unknown field `upstrem`"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("moat.toml: endpoints[1].timeouts: unknown field `handshake`"),
        "{lines:?}"
    );
}

#[test]
fn unknown_top_level_key_and_bad_toml_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = Config::from_toml_str("[server]\nport = 1\n", "moat.toml", dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `server`"),
        "{error}"
    );
    let error = Config::from_toml_str("endpoints = [", "moat.toml", dir.path()).unwrap_err();
    assert!(
        error.to_string().starts_with("moat.toml: not valid TOML:"),
        "{error}"
    );
}

#[test]
fn duplicate_names_missing_fields_and_kind_rules() {
    let text = r#"
[[endpoints]]
name = "a"
kind = "http"
upstream = "8080"
terminate_at = "middle"

[[endpoints]]
name = "a"
kind = "tls"
upstream = "http://x:80"

[[endpoints]]
kind = "ftp"
"#;
    let (_dir, lines) = refusal(text, &[]);
    assert_eq!(
        lines,
        vec![
            "moat.toml: endpoints[0].terminate_at: \"middle\" is not a termination point; use \"edge\" or \"agent\"",
            "moat.toml: endpoints[1].upstream: \"http://x:80\" is an HTTP URL but a tls endpoint forwards raw TCP; give host:port, or use an http endpoint",
            "moat.toml: endpoints[2].kind: \"ftp\" is not an endpoint kind; use \"http\" or \"tls\"",
            "moat.toml: endpoints[2].name: missing; add e.g. name = \"app\"",
            "moat.toml: endpoints[2].upstream: missing; give the service to forward to, e.g. \"8080\" or \"http://app.internal:8080\"",
        ]
    );
}

#[test]
fn duplicate_names_are_refused() {
    let text = "[[endpoints]]\nname = \"a\"\nkind = \"http\"\nupstream = 1\n\
                [[endpoints]]\nname = \"a\"\nkind = \"http\"\nupstream = 2\nlisten = \"0.0.0.0:9000\"\n";
    let (_dir, lines) = refusal(text, &[]);
    assert_eq!(
        lines,
        vec![
            "moat.toml: endpoints[1].name: \"a\" is already the name of endpoints[0]; names must be unique"
        ]
    );
}

#[test]
fn empty_file_has_no_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let error = Config::from_toml_str("", "moat.toml", dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "moat.toml: endpoints: no endpoints; add an [[endpoints]] table with at least name, kind and upstream"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let error = Config::from_toml_file(Path::new("/nonexistent/moat.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/moat.toml: cannot read the configuration file:"),
        "{error}"
    );
}

#[test]
fn select_keeps_named_endpoints_and_names_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[endpoints]]\nname = \"a\"\nkind = \"http\"\nupstream = 1\nlisten = \"127.0.0.1:0\"\n\
                [[endpoints]]\nname = \"b\"\nkind = \"tls\"\nupstream = 2\nlisten = \"127.0.0.1:0\"\n";
    let config = Config::from_toml_str(text, "moat.toml", dir.path()).unwrap();
    let only_b = config
        .clone()
        .select(&["b".to_string()], "moat.toml")
        .unwrap();
    assert_eq!(only_b.endpoints.len(), 1);
    assert_eq!(only_b.endpoints[0].name, "b");
    let error = config.select(&["c".to_string()], "moat.toml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "moat.toml: no endpoint named \"c\"; the file has \"a\", \"b\""
    );
}

#[test]
fn http_only_settings_are_refused_on_tls_endpoints() {
    let text = r#"
[[endpoints]]
name = "db"
kind = "tls"
upstream = "5432"
mutual_tls_cas = ["ca.pem"]
client_auth = "request"
[endpoints.timeouts]
upstream_response = "5s"
"#;
    let (_dir, lines) = refusal(text, &["ca.pem"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(
        "moat.toml: endpoints[0].client_auth: \"request\" applies to http endpoints only"
    ));
    assert!(lines[1].starts_with(
        "moat.toml: endpoints[0].timeouts.upstream_response: applies to http endpoints only"
    ));
}

#[test]
fn flag_errors_name_the_flag() {
    let spec = moat_config::EndpointSpec {
        kind: Some("http".into()),
        upstream: Some("localhost:x".into()),
        crls: vec!["missing.crl".into()],
        timeouts: moat_config::TimeoutsSpec {
            idle: Some("soon".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = Config::from_specs(
        vec![spec],
        None,
        "moat http",
        moat_config::FieldStyle::Flags,
    )
    .unwrap_err();
    assert_eq!(
        problems(error),
        vec![
            "moat http: --upstream: \"localhost:x\" is not a port, host:port or URL",
            "moat http: --crl: missing.crl: no such file; check the path",
            "moat http: --crl: revocation lists need the CAs that issued them; give the CA file too (mutual_tls_cas, --mutual-tls-cas) or drop the CRL",
            "moat http: --idle-timeout: \"soon\" is not a duration; write e.g. \"10s\", \"500ms\" or \"1m30s\"",
        ]
    );
}
