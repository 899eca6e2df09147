//! The top-level telemetry keys of `moat.toml`: `audit_log` and `metrics_listen`.

use std::path::Path;

use moat_config::{Config, TelemetryConfig};

const ENDPOINT: &str = r#"
[[endpoints]]
name = "app"
kind = "http"
upstream = 8080
"#;

#[test]
fn audit_log_follows_the_file_and_metrics_listen_is_an_address() {
    let text = format!(
        "audit_log = \"logs/audit.jsonl\"\nmetrics_listen = \"127.0.0.1:9090\"\n{ENDPOINT}"
    );
    let config = Config::from_toml_str(&text, "moat.toml", Path::new("/etc/moat")).unwrap();
    assert_eq!(
        config.telemetry,
        TelemetryConfig {
            audit_log: Some("/etc/moat/logs/audit.jsonl".into()),
            metrics_listen: Some("127.0.0.1:9090".parse().unwrap()),
        }
    );
}

#[test]
fn without_the_keys_audit_goes_to_stdout_and_no_metrics_are_served() {
    let config = Config::from_toml_str(ENDPOINT, "moat.toml", Path::new(".")).unwrap();
    assert_eq!(config.telemetry, TelemetryConfig::default());
    let text = format!("audit_log = \"-\"\n{ENDPOINT}");
    let config = Config::from_toml_str(&text, "moat.toml", Path::new(".")).unwrap();
    assert_eq!(config.telemetry.audit_log, None);
}

#[test]
fn a_metrics_listen_that_is_not_an_address_is_named_with_the_fix() {
    let text = format!("metrics_listen = \"localhost:9090\"\n{ENDPOINT}");
    let error = Config::from_toml_str(&text, "moat.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(error.contains("moat.toml"), "{error}");
    assert!(error.contains("metrics_listen"), "{error}");
    assert!(error.contains("127.0.0.1:9090"), "{error}");
}

#[test]
fn selecting_endpoints_keeps_the_telemetry_settings() {
    let text = format!("metrics_listen = \"127.0.0.1:9090\"\n{ENDPOINT}");
    let config = Config::from_toml_str(&text, "moat.toml", Path::new("."))
        .unwrap()
        .select(&["app".to_owned()], "moat.toml")
        .unwrap();
    assert!(config.telemetry.metrics_listen.is_some());
}
