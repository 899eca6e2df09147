//! Validation of endpoint specs into the [`Config`] model: every problem is reported, each
//! naming its field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::domain::valid_domain;
use crate::duration::parse_duration;
use crate::error::{ConfigError, FieldError};
use crate::model::{
    ClientAuthMode, Config, EndpointConfig, EndpointKind, TerminateAt, Timeouts, TlsVersion,
    UpstreamScheme,
};
use crate::operations::{self, check_shared_addresses};
use crate::problems::{FieldStyle, Problems};
use crate::rules::{RuleContext, validate_rules};
use crate::spec::{DEFAULT_DOMAIN, DEFAULT_LISTEN, EndpointSpec, TimeoutsSpec};
use crate::upstream::parse_upstream;

impl Config {
    /// Validates endpoint specs into a [`Config`], resolving relative paths against
    /// `base_dir` (the config file's directory) and checking that every named file exists.
    ///
    /// `origin` names the source in errors (`moat.toml`, `moat http`). Every problem is
    /// reported, not just the first.
    pub fn from_specs(
        specs: Vec<EndpointSpec>,
        base_dir: Option<&Path>,
        origin: &str,
        style: FieldStyle,
    ) -> Result<Config, ConfigError> {
        validate_indexed(
            specs.into_iter().enumerate().collect(),
            base_dir,
            origin,
            style,
            Vec::new(),
            true,
        )
    }
}

/// Validates specs that keep their position in the source (some may have been dropped earlier
/// with a problem already in `problems`), so field paths name the right `endpoints[INDEX]`.
/// `require_endpoints`: no endpoint at all is a problem (a file with an `[edge]` table may
/// have none).
pub(crate) fn validate_indexed(
    specs: Vec<(usize, EndpointSpec)>,
    base_dir: Option<&Path>,
    origin: &str,
    style: FieldStyle,
    mut problems: Vec<FieldError>,
    require_endpoints: bool,
) -> Result<Config, ConfigError> {
    let mut endpoints = Vec::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut indices = Vec::new();
    for (index, spec) in specs {
        let mut endpoint_problems = Problems {
            style,
            index,
            list: &mut problems,
        };
        if let Some(endpoint) = validate_endpoint(spec, base_dir, &mut endpoint_problems) {
            indices.push(index);
            if let Some(first) = seen_names.insert(endpoint.name.clone(), index) {
                endpoint_problems.push(
                    "name",
                    format!(
                        "{:?} is already the name of endpoints[{first}]; names must be unique",
                        endpoint.name
                    ),
                );
            }
            endpoints.push(endpoint);
        }
    }
    check_shared_addresses(&endpoints, &indices, style, &mut problems);
    if require_endpoints && problems.is_empty() && endpoints.is_empty() {
        problems.push(FieldError {
            path: "endpoints".to_string(),
            message:
                "no endpoints; add an [[endpoints]] table with at least name, kind and upstream"
                    .to_string(),
        });
    }
    if problems.is_empty() {
        Ok(Config {
            endpoints,
            telemetry: crate::TelemetryConfig::default(),
            max_connections: crate::model::DEFAULT_MAX_CONNECTIONS,
            edge: None,
            agent: None,
        })
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// Validates one endpoint; returns `None` when any problem was recorded.
fn validate_endpoint(
    spec: EndpointSpec,
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<EndpointConfig> {
    let before = problems.list.len();

    let kind = match spec.kind.as_deref() {
        Some("http") => Some(EndpointKind::Http),
        Some("tls") => Some(EndpointKind::Tls),
        Some(other) => {
            problems.push(
                "kind",
                format!("{other:?} is not an endpoint kind; use \"http\" or \"tls\""),
            );
            None
        }
        None => {
            problems.push("kind", "missing; add kind = \"http\" or kind = \"tls\"");
            None
        }
    };

    let operations = operations::validate(&spec, kind, problems);

    let name = match spec.name {
        Some(name) if valid_name(&name) => Some(name),
        Some(name) => {
            problems.push(
                "name",
                format!("{name:?} is not a valid name; use letters, digits, '.', '_' and '-' only"),
            );
            None
        }
        None => match (problems.style, kind) {
            // Flags name the endpoint after its command, like `moat http`.
            (FieldStyle::Flags, Some(EndpointKind::Http)) => Some("http".to_string()),
            (FieldStyle::Flags, Some(EndpointKind::Tls)) => Some("tls".to_string()),
            (FieldStyle::Flags, None) => None,
            (FieldStyle::File, _) => {
                problems.push("name", "missing; add e.g. name = \"app\"");
                None
            }
        },
    };

    let listen_text = spec.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(listen) => Some(listen),
        Err(_) => {
            problems.push(
                "listen",
                format!("{listen_text:?} is not an IP:port address; write e.g. \"0.0.0.0:8443\" or \"127.0.0.1:0\""),
            );
            None
        }
    };

    let domain = spec.domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
    if !valid_domain(&domain) {
        problems.push(
            "domain",
            format!("{domain:?} is not a DNS name; write e.g. \"app.example.com\""),
        );
    }

    let upstream = match (spec.upstream.as_deref(), kind) {
        (None, _) => {
            problems.push(
                "upstream",
                "missing; give the service to forward to, e.g. \"8080\" or \"http://app.internal:8080\"",
            );
            None
        }
        (Some(_), None) => None,
        (Some(text), Some(kind)) => match parse_upstream(text, kind) {
            Ok(upstream) => Some(upstream),
            Err(message) => {
                problems.push("upstream", message);
                None
            }
        },
    };

    let resolve = |path: PathBuf| match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    };
    let upstream_ca = spec.upstream_ca.map(resolve);
    let crt = spec.crt.map(resolve);
    let key = spec.key.map(resolve);
    let mutual_tls_cas: Vec<PathBuf> = spec.mutual_tls_cas.into_iter().map(resolve).collect();
    let crls: Vec<PathBuf> = spec.crls.into_iter().map(resolve).collect();

    if let Some(upstream) = &upstream {
        match (&upstream_ca, upstream.scheme) {
            (Some(_), UpstreamScheme::Https) | (None, _) => {}
            (Some(_), _) => problems.push(
                "upstream_ca",
                "is only used for an https:// upstream; remove it or make the upstream https://",
            ),
        }
    }
    match (&crt, &key) {
        (Some(_), None) => problems.push(
            "key",
            "missing; a server certificate (crt) needs its private key (key)",
        ),
        (None, Some(_)) => problems.push(
            "crt",
            "missing; a server private key (key) needs its certificate (crt)",
        ),
        _ => {}
    }
    for (field, path) in [("upstream_ca", &upstream_ca), ("crt", &crt), ("key", &key)] {
        if let Some(path) = path {
            check_file(field, path, problems);
        }
    }
    for (position, path) in mutual_tls_cas.iter().enumerate() {
        check_file(
            &list_field("mutual_tls_cas", position, problems.style),
            path,
            problems,
        );
    }
    for (position, path) in crls.iter().enumerate() {
        check_file(
            &list_field("crls", position, problems.style),
            path,
            problems,
        );
    }
    if !crls.is_empty() && mutual_tls_cas.is_empty() {
        problems.push(
            "crls",
            "revocation lists need the CAs that issued them; give the CA file too \
             (mutual_tls_cas, --mutual-tls-cas) or drop the CRL",
        );
    }

    let client_auth = match spec.client_auth.as_deref() {
        None | Some("require-and-verify") => Some(ClientAuthMode::RequireAndVerify),
        Some("request") => Some(ClientAuthMode::Request),
        Some(other) => {
            problems.push(
                "client_auth",
                format!("{other:?} is not a client verification strategy; use \"require-and-verify\" or \"request\""),
            );
            None
        }
    };
    if spec.client_auth.is_some() && mutual_tls_cas.is_empty() {
        problems.push(
            "client_auth",
            "needs the CAs of the client certificates: without them none is asked for; give the \
             CA file (mutual_tls_cas, --mutual-tls-cas)",
        );
    }

    if kind == Some(EndpointKind::Tls) && client_auth == Some(ClientAuthMode::Request) {
        problems.push(
            "client_auth",
            "\"request\" applies to http endpoints only: a tls endpoint has no requests to refuse, so \
             it always requires a certificate; remove it",
        );
    }
    if kind == Some(EndpointKind::Tls)
        && (spec.timeouts.request_body.is_some() || spec.timeouts.request_body_min_rate.is_some())
    {
        problems.push(
            "timeouts.request_body",
            "applies to http endpoints only: a tls endpoint forwards a byte stream without \
             request bodies; remove it (timeouts.idle bounds a silent connection)",
        );
    }
    if kind == Some(EndpointKind::Tls) && spec.timeouts.upstream_response.is_some() {
        problems.push(
            "timeouts.upstream_response",
            "applies to http endpoints only: a tls endpoint forwards a byte stream without \
             responses; remove it (timeouts.idle bounds a silent connection)",
        );
    }

    let tls_min_version = match spec.tls_min_version.as_deref() {
        None | Some("1.2") => Some(TlsVersion::Tls12),
        Some("1.3") => Some(TlsVersion::Tls13),
        Some(other) => {
            problems.push(
                "tls_min_version",
                format!("{other:?} is not a supported TLS version; use \"1.2\" or \"1.3\""),
            );
            None
        }
    };

    let terminate_at = match (spec.terminate_at.as_deref(), kind) {
        (None, _) => Some(TerminateAt::default()),
        (Some("edge"), _) => Some(TerminateAt::Edge),
        (Some("agent"), _) => Some(TerminateAt::Agent),
        (Some(other), _) => {
            problems.push(
                "terminate_at",
                format!("{other:?} is not a termination point; use \"edge\" or \"agent\""),
            );
            None
        }
    };

    let publish = spec.publish.unwrap_or(false);
    let pool = spec.pool.unwrap_or(false);
    if pool && !publish {
        problems.push(
            "pool",
            "applies only to an endpoint published through an edge (publish = true): a pool \
             shares a hostname the edge serves; remove it or publish the endpoint",
        );
    }

    let timeouts = validate_timeouts(&spec.timeouts, problems);

    let rule_context = RuleContext {
        prefix: match (problems.style, &spec.policy_file) {
            (FieldStyle::File, _) => problems.field("rules"),
            (FieldStyle::Flags, Some(file)) => format!("--policy {}: rules", file.display()),
            (FieldStyle::Flags, None) => "rules".to_string(),
        },
        kind,
        has_cas: !mutual_tls_cas.is_empty(),
    };
    let rule_specs = spec.rules.clone();
    let rules = validate_rules(spec.rules, &rule_context, problems.list);

    if problems.list.len() != before {
        return None;
    }
    Some(EndpointConfig {
        name: name?,
        kind: kind?,
        listen: listen?,
        domain,
        upstream: upstream?,
        upstream_ca,
        crt,
        key,
        mutual_tls_cas,
        crls,
        client_auth: client_auth?,
        tls_min_version: tls_min_version?,
        terminate_at: terminate_at?,
        publish,
        pool,
        timeouts: timeouts?,
        default: spec.default.unwrap_or(false),
        ca_hints: spec.ca_hints.unwrap_or(true),
        session_resumption: spec.session_resumption.unwrap_or(true),
        crl_expired: operations?.crl_expired,
        upstream_proxy_protocol: operations?.upstream_proxy_protocol,
        upstream_protocol: operations?.upstream_protocol,
        rules: rules?,
        rule_specs,
        policy_file: spec.policy_file,
    })
}

fn validate_timeouts(spec: &TimeoutsSpec, problems: &mut Problems<'_>) -> Option<Timeouts> {
    let mut timeouts = Timeouts::default();
    let mut valid = true;
    for (key, text, slot) in [
        (
            "request_header",
            &spec.request_header,
            &mut timeouts.request_header,
        ),
        ("idle", &spec.idle, &mut timeouts.idle),
        (
            "upstream_connect",
            &spec.upstream_connect,
            &mut timeouts.upstream_connect,
        ),
        (
            "upstream_response",
            &spec.upstream_response,
            &mut timeouts.upstream_response,
        ),
        (
            "request_body",
            &spec.request_body,
            &mut timeouts.request_body,
        ),
    ] {
        let Some(text) = text else { continue };
        match parse_duration(text) {
            Ok(duration) if duration.is_zero() => {
                problems.push(&format!("timeouts.{key}"), "must be longer than zero");
                valid = false;
            }
            Ok(duration) => *slot = duration,
            Err(message) => {
                problems.push(&format!("timeouts.{key}"), message);
                valid = false;
            }
        }
    }
    if let Some(rate) = spec.request_body_min_rate {
        timeouts.request_body_min_rate = rate;
    }
    valid.then_some(timeouts)
}

/// The path of one element of a list field: `mutual_tls_cas[0]` in a file, the flag otherwise.
fn list_field(key: &str, position: usize, style: FieldStyle) -> String {
    match style {
        FieldStyle::File => format!("{key}[{position}]"),
        FieldStyle::Flags => key.to_string(),
    }
}

fn check_file(field: &str, path: &Path, problems: &mut Problems<'_>) {
    // A PEM pasted where its file's path belongs (`--crt "$(cat server.crt)"`) would otherwise
    // be printed whole, key material included, as a file that does not exist.
    let text = path.to_string_lossy();
    if let Some(begin) = text.find("-----BEGIN ") {
        let label = text[begin..].lines().next().unwrap_or("-----BEGIN");
        problems.push(
            field,
            format!(
                "holds the contents of a PEM file ({label}...), not a path; give the path of the \
                 file that holds it"
            ),
        );
        return;
    }
    if !path.is_file() {
        problems.push(
            field,
            format!("{}: no such file; check the path", path.display()),
        );
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
