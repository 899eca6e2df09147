//! Reading `moat.toml`: TOML into endpoint specs, then the shared validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ConfigError, FieldError};
use crate::model::{Config, TelemetryConfig};
use crate::problems::FieldStyle;
use crate::spec::{AgentSpec, EdgeSpec, EndpointSpec, GrantSpec};
use crate::tunnel::{validate_agent, validate_edge};
use crate::validate::validate_indexed;

/// The top level of `moat.toml`: `[[endpoints]]` and the process-wide telemetry keys; unknown
/// keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopLevel {
    #[serde(default)]
    endpoints: Vec<toml::Value>,
    /// Audit log file; `-` for stdout.
    audit_log: Option<PathBuf>,
    /// `IP:PORT` of the metrics and health listener.
    metrics_listen: Option<String>,
    /// Client connections served at once, across every endpoint.
    max_connections: Option<i64>,
    /// The `[edge]` table, decoded on its own so its problems carry its path.
    edge: Option<toml::Value>,
    /// The `[agent]` table.
    agent: Option<toml::Value>,
}

/// Resolves the top-level telemetry keys, recording a problem for an unusable address.
fn telemetry_config(
    audit_log: Option<PathBuf>,
    metrics_listen: Option<String>,
    base_dir: &Path,
    problems: &mut Vec<FieldError>,
) -> TelemetryConfig {
    let audit_log = audit_log
        .filter(|path| path.as_os_str() != "-")
        .map(|path| base_dir.join(path));
    let metrics_listen = metrics_listen.and_then(|text| match text.parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            problems.push(FieldError {
                path: "metrics_listen".to_string(),
                message: format!(
                    "{text:?} is not an IP:PORT address; give e.g. \"127.0.0.1:9090\""
                ),
            });
            None
        }
    });
    TelemetryConfig {
        audit_log,
        metrics_listen,
    }
}

/// A key of the table at `table` (`endpoints[1]`, `edge`) that has the wrong type: toml ends
/// serde's message with `` in `KEY` ``, which becomes the field path, as validation names fields.
fn structural_error(table: &str, error: &toml::de::Error) -> FieldError {
    let message = error.to_string().trim_end().replace('\n', " ");
    let keyed = message
        .strip_suffix('`')
        .and_then(|rest| rest.rsplit_once(" in `"));
    match keyed {
        Some((message, key)) => FieldError {
            path: format!("{table}.{key}"),
            message: message.to_owned(),
        },
        None => FieldError {
            path: table.to_owned(),
            message,
        },
    }
}

/// Decodes the `[edge]` table, each `[[edge.grants]]` on its own so that a mistake in one is
/// reported with its index and does not hide the others.
fn decode_edge(mut value: toml::Value, problems: &mut Vec<FieldError>) -> Option<EdgeSpec> {
    let grants = value
        .as_table_mut()
        .and_then(|table| table.remove("grants"));
    let mut spec = match EdgeSpec::deserialize(value) {
        Ok(spec) => Some(spec),
        Err(error) => {
            problems.push(structural_error("edge", &error));
            None
        }
    };
    let grants = match grants {
        None => Vec::new(),
        Some(toml::Value::Array(grants)) => grants,
        Some(_) => {
            problems.push(FieldError {
                path: "edge.grants".to_owned(),
                message: "expected [[edge.grants]] tables, each with agents and hostnames"
                    .to_owned(),
            });
            return None;
        }
    };
    for (index, grant) in grants.into_iter().enumerate() {
        match GrantSpec::deserialize(grant) {
            Ok(grant) => {
                if let Some(spec) = &mut spec {
                    spec.grants.push(grant);
                }
            }
            Err(error) => {
                // The rest of the table is still checked; the problem refuses the file.
                problems.push(structural_error(&format!("edge.grants[{index}]"), &error));
            }
        }
    }
    spec
}

impl Config {
    /// Reads and validates a `moat.toml` file; relative paths in it are resolved against the
    /// file's directory, and errors name the file and each field.
    pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            what: "configuration file",
            source,
        })?;
        let base_dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        let base_dir = base_dir.unwrap_or(Path::new("."));
        Config::from_toml_str(&text, &path.display().to_string(), base_dir)
    }

    /// Parses and validates TOML text; `origin` names it in errors and `base_dir` anchors its
    /// relative paths.
    pub fn from_toml_str(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let top: FileTopLevel = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            origin: origin.to_string(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        // Each endpoint is decoded on its own so that a mistake in one does not hide the others.
        let mut structural = Vec::new();
        let mut specs = Vec::new();
        for (index, value) in top.endpoints.into_iter().enumerate() {
            match EndpointSpec::deserialize(value) {
                Ok(spec) => specs.push((index, spec)),
                Err(error) => {
                    structural.push(structural_error(&format!("endpoints[{index}]"), &error))
                }
            }
        }
        let has_edge = top.edge.is_some();
        let edge = top
            .edge
            .and_then(|value| decode_edge(value, &mut structural))
            .and_then(|spec| validate_edge(spec, base_dir, &mut structural));
        let has_agent = top.agent.is_some();
        let agent = top
            .agent
            .and_then(|value| match AgentSpec::deserialize(value) {
                Ok(spec) => validate_agent(spec, &mut structural),
                Err(error) => {
                    structural.push(structural_error("agent", &error));
                    None
                }
            });
        if !has_agent {
            for (index, spec) in &specs {
                if spec.publish == Some(true) {
                    structural.push(FieldError {
                        path: format!("endpoints[{index}].publish"),
                        message: "needs the edge to publish through; add an [agent] table with \
                                  edge = \"HOST:PORT\" (the edge's agent listener)"
                            .to_owned(),
                    });
                }
            }
        }
        let telemetry =
            telemetry_config(top.audit_log, top.metrics_listen, base_dir, &mut structural);
        let max_connections = match top.max_connections.map(usize::try_from) {
            None => crate::model::DEFAULT_MAX_CONNECTIONS,
            Some(Ok(limit)) if limit > 0 => limit,
            Some(_) => {
                structural.push(FieldError {
                    path: "max_connections".to_string(),
                    message: "must be a whole number of at least 1, e.g. 10000".to_string(),
                });
                crate::model::DEFAULT_MAX_CONNECTIONS
            }
        };
        // A file for `moat edge` alone needs no endpoints.
        let config = validate_indexed(
            specs,
            Some(base_dir),
            origin,
            FieldStyle::File,
            structural,
            !has_edge,
        )?;
        Ok(Config {
            telemetry,
            max_connections,
            edge,
            agent,
            ..config
        })
    }

    /// Keeps only the endpoints named in `names` (in the order given), for `moat start NAME...`.
    pub fn select(self, names: &[String], origin: &str) -> Result<Config, ConfigError> {
        let mut chosen = Vec::new();
        for name in names {
            match self
                .endpoints
                .iter()
                .find(|endpoint| &endpoint.name == name)
            {
                Some(endpoint) => {
                    if !chosen
                        .iter()
                        .any(|c: &crate::EndpointConfig| &c.name == name)
                    {
                        chosen.push(endpoint.clone());
                    }
                }
                None => {
                    return Err(ConfigError::UnknownEndpoint {
                        origin: origin.to_string(),
                        name: name.clone(),
                        known: self.endpoints.iter().map(|e| e.name.clone()).collect(),
                    });
                }
            }
        }
        Ok(Config {
            endpoints: chosen,
            telemetry: self.telemetry,
            max_connections: self.max_connections,
            edge: self.edge,
            agent: self.agent,
        })
    }
}
