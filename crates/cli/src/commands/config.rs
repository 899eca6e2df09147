//! `moat config`: check a configuration file without starting anything.

use std::path::PathBuf;

use moat_config::{AgentConfig, Config, EdgeConfig, EndpointConfig, TerminateAt};

/// The `moat config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a moat.toml file: prints "ok: N endpoints" (and ", [edge]", ", [agent]") after
    /// any warnings about access rules (unreachable, or a host/path that cannot match), notes
    /// on what the rules turn off and a line each on the [edge] and [agent] tables, or every
    /// error with its field.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// One line on what `moat edge --config FILE` would run.
fn edge_summary(edge: &EdgeConfig) -> String {
    let mut parts = vec![
        format!("clients on {}", edge.listen),
        format!("agents on {}", edge.agent_listen),
    ];
    if let Some(name) = edge.agent_names.first() {
        parts.push(format!("tokens name {name}"));
    }
    parts.push(match &edge.domain {
        Some(domain) => format!("domain {domain}"),
        None => "no domain".to_owned(),
    });
    if edge.crt.is_some() {
        parts.push("its own certificate".to_owned());
    }
    if edge.agent_cas.is_some() {
        parts.push("agents' own CAs".to_owned());
    }
    let grants: Vec<String> = edge
        .grants
        .iter()
        .map(|grant| format!("{}={}", grant.agents, grant.hostnames.join(",")))
        .collect();
    parts.push(if grants.is_empty() {
        "no grants but join tokens'".to_owned()
    } else {
        format!("grants {}", grants.join(" "))
    });
    parts.push(format!(
        "heartbeat tolerance {}s",
        edge.heartbeat_tolerance.as_secs_f64()
    ));
    format!("edge: {}", parts.join(", "))
}

/// One line on what `moat start` publishes through the `[agent]`'s edge.
fn agent_summary(agent: &AgentConfig, endpoints: &[EndpointConfig]) -> String {
    let published: Vec<String> = endpoints
        .iter()
        .filter(|endpoint| endpoint.publish)
        .map(|endpoint| {
            let at = match endpoint.terminate_at {
                TerminateAt::Edge => "TLS ends at the edge",
                TerminateAt::Agent => "TLS ends at the agent",
            };
            let pool = if endpoint.pool { ", pooled" } else { "" };
            format!("{} ({at}{pool})", endpoint.name)
        })
        .collect();
    if published.is_empty() {
        format!(
            "agent: edge {}, no endpoint publishes through it (publish = true)",
            agent.edges.join(", ")
        )
    } else {
        format!(
            "agent: edge {}, publishes {}",
            agent.edges.join(", "),
            published.join(", ")
        )
    }
}

/// Runs one `moat config` subcommand.
pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { file } => {
            let config = Config::from_toml_file(&file)?;
            for (index, endpoint) in config.endpoints.iter().enumerate() {
                for warning in moat_policy::lint(&endpoint.rules) {
                    println!(
                        "warning: {}: endpoints[{index}] ({}): {warning}",
                        file.display(),
                        endpoint.name
                    );
                }
                if endpoint.session_resumption && !moat_gateway::resumes_sessions(endpoint) {
                    println!(
                        "note: {}: endpoints[{index}] ({}): no session resumption: its rules read \
                         the client's address (source_ip) or run CEL expressions, which a resumed \
                         handshake would skip, so every connection makes a full handshake",
                        file.display(),
                        endpoint.name
                    );
                }
            }
            if let Some(edge) = &config.edge {
                println!("{}", edge_summary(edge));
            }
            if let Some(agent) = &config.agent {
                println!("{}", agent_summary(agent, &config.endpoints));
            }
            let count = config.endpoints.len();
            let tables: String = [
                config.edge.as_ref().map(|_| ", [edge]"),
                config.agent.as_ref().map(|_| ", [agent]"),
            ]
            .into_iter()
            .flatten()
            .collect();
            println!(
                "ok: {count} endpoint{}{tables}",
                if count == 1 { "" } else { "s" }
            );
            Ok(())
        }
    }
}
