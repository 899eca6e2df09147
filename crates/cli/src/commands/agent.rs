//! `moat agent join` and publishing through an edge (`moat http|tls --edge`): the agent's side.

use std::path::PathBuf;

use anyhow::Context as _;
use moat_agent::{Agent, AgentEvent};
use moat_config::Config;

use super::inspect::{self, InspectArgs};
use super::serve::{
    LogArgs, init_logging, moat_home, open_telemetry, runtime_for, serve_metrics, shutdown_signal,
    worker_threads,
};
use moat_console::Inspector;

/// `moat agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Join an edge with a one-time token: make a key, have the edge sign it, pin the edge's CA.
    Join(JoinArgs),
}

/// Flags of `moat agent join`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// File holding the join token printed by `moat edge token` (`-`: standard input). Tokens
    /// are secrets: they are read from a file or MOAT_JOIN_TOKEN, never from the command line.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The name to join as (the certificate's CN); by default the edge assigns one.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Where the agent's credentials live.
pub(crate) fn credentials_dir() -> anyhow::Result<PathBuf> {
    Ok(moat_home()?.join("agent"))
}

/// Runs `moat agent`.
pub fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Join(args) => join(args),
    }
}

fn join(args: JoinArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the join token from standard input")?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the join token from {}", path.display()))?,
        None => std::env::var("MOAT_JOIN_TOKEN").map_err(|_| {
            anyhow::anyhow!(
                "no join token: give --token-file FILE (or -) or set MOAT_JOIN_TOKEN to the token `moat edge token` printed"
            )
        })?,
    };
    let dir = credentials_dir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let credentials = runtime
        .block_on(moat_edge::join(token.trim(), &dir, args.name.as_deref()))
        .context("cannot join the edge (join tokens are made on the edge with `moat edge token --grant GLOB`)")?;
    println!(
        "moat: joined the edge at {} as {}; credentials in {}",
        credentials.edge(),
        credentials.agent_name(),
        dir.display()
    );
    println!(
        "moat: it may publish {}",
        if credentials.grant().is_empty() {
            "what the edge's grants allow".to_owned()
        } else {
            credentials.grant().join(", ")
        }
    );
    println!(
        "moat: publish with e.g.: moat http 8080 --edge {} --domain NAME",
        credentials.edge()
    );
    Ok(())
}

/// Publishes `config`'s endpoints through the edges at `edges` (a session to each) until a
/// signal; each endpoint's `pool` says whether it shares its hostname. With `inspect`, the
/// request inspector sees the exchanges of the endpoints whose TLS ends here, and the edge
/// sessions.
pub(crate) fn publish(
    config: Config,
    log: &LogArgs,
    edges: Vec<String>,
    inspect: Option<&InspectArgs>,
) -> anyhow::Result<()> {
    init_logging(&log.log_format);
    let (audit, telemetry) = open_telemetry(log, config.telemetry.audit_log.clone())?;
    let metrics_listen = log.metrics_listen.or(config.telemetry.metrics_listen);
    let runtime = runtime_for(worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_signal();
        serve_metrics(metrics_listen, &telemetry).await?;
        let dir = credentials_dir()?;
        let inspector = match inspect {
            Some(inspect) => inspect::start(inspect, &telemetry).await?,
            None => None,
        };
        let observer = inspector.as_ref().map(inspect::Started::observer);
        let agent = Agent::new(
            edges,
            dir.clone(),
            &config,
            moat_home()?,
            telemetry.clone(),
            observer,
        )
        .await
        .map_err(|error| match error {
            moat_agent::AgentError::Credentials(error) => anyhow::anyhow!(
                "{error}; join the edge first with `moat agent join --token-file FILE`"
            ),
            other => other.into(),
        })?;
        let inspector = inspector.map(|mut started| {
            started.announce();
            started
                .inspector
                .set_endpoints(inspect::served_endpoints(&config, std::iter::empty()));
            started.inspector
        });
        let (events, mut reports) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = reports.recv().await {
                print_event(&event);
                if let Some(inspector) = &inspector {
                    inspect_event(inspector, &event);
                }
            }
        });
        agent.run(shutdown, events).await?;
        anyhow::Ok(())
    });
    audit.close();
    outcome
}

/// Tells the inspector's status page about the edge sessions and published URLs.
fn inspect_event(inspector: &Inspector, event: &AgentEvent) {
    match event {
        AgentEvent::Connected { edge } => inspector.edge_link(&edge.to_string(), true, None),
        AgentEvent::Published { endpoint, url, .. } => inspector.endpoint_published(endpoint, url),
        AgentEvent::Disconnected { reason, edge, .. } => {
            inspector.edge_link(&edge.to_string(), false, Some(reason.to_string()))
        }
        _ => {}
    }
}

/// One line per event on stdout; tests and scripts parse the URL at the end of `published`.
fn print_event(event: &AgentEvent) {
    match event {
        AgentEvent::Connected { edge } => println!("moat: connected to the edge at {edge}"),
        AgentEvent::Published {
            endpoint,
            url,
            edge,
            ..
        } => {
            println!("moat: endpoint {endpoint} (edge {edge}) published at {url}")
        }
        AgentEvent::Refused {
            endpoint,
            reason,
            edge,
        } => {
            println!("moat: endpoint {endpoint} refused by the edge at {edge}: {reason}")
        }
        AgentEvent::Withdrawn {
            edge,
            hostname,
            reason,
        } => println!("moat: {hostname} withdrawn by the edge at {edge}: {reason}"),
        AgentEvent::Disconnected {
            reason,
            retry_in,
            edge,
        } => println!(
            "moat: disconnected from the edge at {edge} ({reason}); reconnecting in {:.1}s",
            retry_in.as_secs_f64()
        ),
    }
}
