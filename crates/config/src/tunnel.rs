//! The `[edge]` and `[agent]` tables of `moat.toml`: validated into [`EdgeConfig`] and
//! [`AgentConfig`], every problem named by its field path (`edge.grants[0].hostnames[1]`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::domain::valid_domain;
use crate::duration::parse_duration;
use crate::error::FieldError;
use crate::model::{AgentConfig, EdgeConfig, EdgeGrant};
use crate::spec::{
    AgentSpec, DEFAULT_ADMIN_LISTEN, DEFAULT_AGENT_LISTEN, DEFAULT_EDGE_LISTEN,
    DEFAULT_HEARTBEAT_TOLERANCE, EdgeSpec, GrantSpec, OneOrMany,
};

/// Records one problem at `path`.
fn push(problems: &mut Vec<FieldError>, path: impl Into<String>, message: impl Into<String>) {
    problems.push(FieldError {
        path: path.into(),
        message: message.into(),
    });
}

/// Validates the `[edge]` table; `None` when any problem was recorded.
pub(crate) fn validate_edge(
    spec: EdgeSpec,
    base_dir: &Path,
    problems: &mut Vec<FieldError>,
) -> Option<EdgeConfig> {
    let before = problems.len();
    let mut address = |key: &str, text: Option<String>, default: &str| {
        let text = text.unwrap_or_else(|| default.to_owned());
        match text.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                push(
                    problems,
                    format!("edge.{key}"),
                    format!("{text:?} is not an IP:port address; write e.g. {default:?}"),
                );
                None
            }
        }
    };
    let listen = address("listen", spec.listen, DEFAULT_EDGE_LISTEN);
    let agent_listen = address("agent_listen", spec.agent_listen, DEFAULT_AGENT_LISTEN);
    let admin_listen = match spec.admin_listen.as_deref() {
        Some("off") => Some(None),
        other => address(
            "admin_listen",
            other.map(str::to_owned),
            DEFAULT_ADMIN_LISTEN,
        )
        .map(Some),
    };

    for (position, name) in spec.agent_names.iter().enumerate() {
        if name.parse::<IpAddr>().is_err() && (name.starts_with("*.") || !valid_domain(name)) {
            push(
                problems,
                format!("edge.agent_names[{position}]"),
                format!(
                    "{name:?} is neither a DNS name nor an IP address; write the name agents \
                     dial, e.g. \"edge.example.com\""
                ),
            );
        }
    }

    if let Some(domain) = &spec.domain
        && !valid_domain(domain)
    {
        push(
            problems,
            "edge.domain",
            format!(
                "{domain:?} is not a DNS name; write a hostname or a wildcard such as \
                 \"*.tunnel.example.com\""
            ),
        );
    }

    let resolve = |path: PathBuf| {
        if path.is_relative() {
            base_dir.join(path)
        } else {
            path
        }
    };
    let crt = spec.crt.map(resolve);
    let key = spec.key.map(resolve);
    let agent_cas = spec.agent_cas.map(resolve);
    let admin_cas = spec.admin_cas.map(resolve);
    match (&crt, &key) {
        (Some(_), None) => push(
            problems,
            "edge.key",
            "missing; a certificate (crt) needs its private key (key)",
        ),
        (None, Some(_)) => push(
            problems,
            "edge.crt",
            "missing; a private key (key) needs its certificate (crt)",
        ),
        _ => {}
    }
    if (crt.is_some() || key.is_some()) && spec.domain.is_none() {
        push(
            problems,
            "edge.domain",
            "missing; the certificate (crt, key) is served for the edge's domain, so give it, \
             e.g. domain = \"*.tunnel.example.com\"",
        );
    }
    for (field, path) in [
        ("crt", &crt),
        ("key", &key),
        ("agent_cas", &agent_cas),
        ("admin_cas", &admin_cas),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            push(
                problems,
                format!("edge.{field}"),
                format!("{}: no such file; check the path", path.display()),
            );
        }
    }

    let tolerance_text = spec
        .heartbeat_tolerance
        .unwrap_or_else(|| DEFAULT_HEARTBEAT_TOLERANCE.to_owned());
    let heartbeat_tolerance = match parse_duration(&tolerance_text) {
        Ok(duration) if duration.is_zero() => {
            push(
                problems,
                "edge.heartbeat_tolerance",
                "must be longer than zero",
            );
            None
        }
        Ok(duration) => Some(duration),
        Err(message) => {
            push(problems, "edge.heartbeat_tolerance", message);
            None
        }
    };

    let grants: Vec<EdgeGrant> = spec
        .grants
        .into_iter()
        .enumerate()
        .filter_map(|(index, grant)| validate_grant(index, grant, problems))
        .collect();

    if problems.len() != before {
        return None;
    }
    Some(EdgeConfig {
        listen: listen?,
        agent_listen: agent_listen?,
        agent_names: spec.agent_names,
        domain: spec.domain,
        crt,
        key,
        agent_cas,
        grants,
        heartbeat_tolerance: heartbeat_tolerance?,
        admin_listen: admin_listen?,
        admin_cas,
        store: spec.store.map(|store| {
            if store.starts_with("postgres://") || store.starts_with("postgresql://") {
                store
            } else {
                resolve(PathBuf::from(store)).display().to_string()
            }
        }),
    })
}

/// Validates `edge.grants[index]`.
fn validate_grant(
    index: usize,
    spec: GrantSpec,
    problems: &mut Vec<FieldError>,
) -> Option<EdgeGrant> {
    let before = problems.len();
    let field = |key: &str| format!("edge.grants[{index}].{key}");
    match spec.agents.as_deref() {
        None => push(
            problems,
            field("agents"),
            "missing; give the agents' certificate CN, exact or a glob, e.g. agents = \"ci-*\"",
        ),
        Some(agents) if agents.trim().is_empty() => push(
            problems,
            field("agents"),
            "is empty; give the agents' certificate CN, exact or a glob, e.g. \"ci-*\"",
        ),
        Some(_) => {}
    }
    match &spec.hostnames {
        None => push(
            problems,
            field("hostnames"),
            "missing; give the hostnames these agents may publish, e.g. \
             hostnames = [\"*.ci.example.com\"]",
        ),
        Some(hostnames) if hostnames.is_empty() => push(
            problems,
            field("hostnames"),
            "is empty; give at least one hostname glob, e.g. [\"*.ci.example.com\"]",
        ),
        Some(hostnames) => {
            for (position, glob) in hostnames.iter().enumerate() {
                if let Err(problem) = check_hostname_glob(glob) {
                    push(
                        problems,
                        format!("edge.grants[{index}].hostnames[{position}]"),
                        format!("{glob:?} {problem}"),
                    );
                }
            }
        }
    }
    if problems.len() != before {
        return None;
    }
    Some(EdgeGrant {
        agents: spec.agents?.trim().to_owned(),
        hostnames: spec.hostnames?,
    })
}

/// Whether `glob` is a hostname glob an edge grant takes: an exact DNS name or `*.` and a DNS
/// name of two labels at least (as the edge reads it); `Err` says what is wrong.
fn check_hostname_glob(glob: &str) -> Result<(), &'static str> {
    let normal = glob.trim_end_matches('.');
    let name = normal.strip_prefix("*.").unwrap_or(normal);
    if name.is_empty() {
        return Err("names no domain; write e.g. \"*.ci.example.com\" or \"app.example.com\"");
    }
    if name.contains('*') {
        return Err("has a wildcard other than one leading \"*.\"; write e.g. \"*.example.com\"");
    }
    if !valid_domain(normal) {
        return Err(
            "is not a DNS name (labels of 1-63 letters, digits or '-', not starting or ending \
             with '-'); write e.g. \"app.example.com\"",
        );
    }
    if normal.starts_with("*.") && !name.contains('.') {
        return Err("covers a whole top-level domain; write e.g. \"*.example.com\"");
    }
    Ok(())
}

/// Validates the `[agent]` table; `None` when any problem was recorded.
pub(crate) fn validate_agent(
    spec: AgentSpec,
    problems: &mut Vec<FieldError>,
) -> Option<AgentConfig> {
    let edges = spec.edge.map(OneOrMany::into_vec).unwrap_or_default();
    if edges.is_empty() {
        push(
            problems,
            "agent.edge",
            "missing; give the edge's agent listener, e.g. edge = \"edge.example.com:4443\" \
             (or several: edge = [\"a.example.com:4443\", \"b.example.com:4443\"])",
        );
        return None;
    }
    let before = problems.len();
    for edge in &edges {
        let port = edge
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        if port.is_none() {
            push(
                problems,
                "agent.edge",
                format!(
                    "{edge:?} is not HOST:PORT; give the edge's agent listener, e.g. \
                     \"edge.example.com:4443\""
                ),
            );
        }
    }
    (problems.len() == before).then_some(AgentConfig { edges })
}
