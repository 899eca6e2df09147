//! `moat edge` and `moat edge token`: the public side of the tunnel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use moat_config::{Config, EdgeConfig, TelemetryConfig};
use moat_edge::{AgentSelector, EdgeState, Grant, HostnameGlob};
use moat_edge_server::{Edge, EdgeSettings};
use moat_store::Store;

use super::serve::{
    LogArgs, init_logging, moat_home, open_telemetry, runtime_for, serve_metrics, shutdown_signal,
    worker_threads,
};

/// Flags of `moat edge` (run the edge) and its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EdgeArgs {
    #[command(subcommand)]
    pub command: Option<EdgeCommand>,
    #[command(flatten)]
    pub run: EdgeRunArgs,
}

/// `moat edge` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EdgeCommand {
    /// Print a one-time join token for an agent (`moat agent join --token-file FILE`).
    Token(TokenArgs),
    // ca, endpoints, grants, domains, agents, disconnect: clients of a running edge's admin API.
    #[command(flatten)]
    Admin(Box<super::edge_admin::AdminCommand>),
}

/// Flags of `moat edge` itself.
#[derive(Debug, clap::Args)]
pub struct EdgeRunArgs {
    /// Run the edge from the [edge] table of this moat.toml instead of the flags below (which
    /// cannot be combined with it; the logging flags can).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "listen", "agent_listen", "agent_names", "domain", "crt", "key", "agent_cas",
            "grants", "heartbeat_tolerance", "admin_listen", "admin_cas",
        ]
    )]
    pub config: Option<PathBuf>,
    /// Where public clients connect.
    #[arg(long, value_name = "ADDR", default_value = moat_config::DEFAULT_EDGE_LISTEN)]
    pub listen: SocketAddr,
    /// Where agents connect (mutual TLS).
    #[arg(long, value_name = "ADDR", default_value = moat_config::DEFAULT_AGENT_LISTEN)]
    pub agent_listen: SocketAddr,
    /// The names agents reach the agent listener by, for its certificate (repeatable; the
    /// first is the address join tokens carry). localhost and loopback are always included.
    #[arg(long = "agent-name", value_name = "NAME")]
    pub agent_names: Vec<String>,
    /// The edge's wildcard domain, e.g. '*.tunnel.example.com': hostnames under it need no
    /// certificate from the agent, unnamed endpoints get a name under it, and a name under it
    /// that nobody publishes answers 404 "endpoint offline".
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Certificate chain (PEM) for --domain; without --crt/--key moat's local CA issues one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub crt: Option<PathBuf>,
    /// Private key (PEM) of --crt.
    #[arg(long, value_name = "FILE", requires = "crt")]
    pub key: Option<PathBuf>,
    /// CAs (PEM) whose certificates agents present, instead of the edge's own agent CA (then
    /// agents cannot join with tokens).
    #[arg(long, value_name = "FILE")]
    pub agent_cas: Option<PathBuf>,
    /// Let agents whose certificate CN matches AGENT publish hostnames matching HOSTS, as
    /// AGENT=HOSTS (globs, e.g. 'ci-*=*.ci.example.com'; repeatable). Joined agents also get
    /// the grant of their token.
    #[arg(long = "grant", value_name = "AGENT=HOSTS")]
    pub grants: Vec<String>,
    /// How long an agent may stay silent before its endpoints are withdrawn (default 15s).
    #[arg(long, value_name = "DURATION", default_value = moat_config::DEFAULT_HEARTBEAT_TOLERANCE)]
    pub heartbeat_tolerance: String,
    /// Where the admin API listens (JSON over HTTPS; clients need an administrator's
    /// certificate), or 'off'. `moat edge ca|endpoints|agents|token` talk to it.
    #[arg(long, value_name = "ADDR|off", default_value = moat_config::DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,
    /// CAs (PEM) whose client certificates are the admin API's administrators, instead of the
    /// edge's own admin CA (made on first start, with a local administrator certificate in
    /// $MOAT_HOME/edge/admin/).
    #[arg(long, value_name = "FILE")]
    pub admin_cas: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Where the edge's control-plane store is (shared by `moat edge` and its subcommands).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The control-plane store: a SQLite file, or a postgres:// URL that several edges share
    /// (default: $MOAT_HOME/edge/store.db; with --config, the file's edge.store). A URL with a
    /// password goes in the MOAT_STORE environment variable, never on the command line.
    #[arg(long = "store", value_name = "FILE|URL", env = "MOAT_STORE")]
    pub location: Option<String>,
}

impl StoreArgs {
    /// The store's location, refusing a password given on the command line (where every user
    /// of the machine can read it in the process list).
    fn location(&self) -> anyhow::Result<Option<String>> {
        let Some(location) = &self.location else {
            return Ok(None);
        };
        let from_environment = std::env::var("MOAT_STORE").is_ok_and(|value| value == *location);
        if !from_environment && url_has_password(location) {
            anyhow::bail!(
                "--store: the URL holds a password, which the process list shows to every user; \
                 put the URL in the MOAT_STORE environment variable (or edge.store in moat.toml) instead"
            );
        }
        Ok(Some(location.clone()))
    }
}

/// Whether `location` is a database URL with a password (`user:password@`, `password=`).
fn url_has_password(location: &str) -> bool {
    let Some((_, rest)) = location.split_once("://") else {
        return false;
    };
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let credentials = authority
        .split_once('@')
        .map(|(credentials, _)| credentials);
    credentials.is_some_and(|credentials| credentials.contains(':'))
        || query.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|key| key.eq_ignore_ascii_case("password"))
        })
}

/// Flags of `moat edge token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Hostnames the joining agent may publish (globs, repeatable), e.g. '*.a.example.com'.
    #[arg(long = "grant", value_name = "GLOB")]
    pub grants: Vec<String>,
    /// How long the token works.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,
    /// The address agents dial (the agent listener); default: where the edge last started.
    #[arg(long, value_name = "HOST:PORT")]
    pub edge_address: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The file where a running edge records the address join tokens carry.
const ADDRESS_FILE: &str = "agent-address";
/// The file where a running edge records its admin API's URL, for `moat edge ca|…`.
pub(crate) const ADMIN_ADDRESS_FILE: &str = "admin-address";

/// Runs `moat edge`.
pub fn run(args: EdgeArgs) -> anyhow::Result<()> {
    match args.command {
        Some(EdgeCommand::Token(token)) => print_token(token),
        Some(EdgeCommand::Admin(command)) => super::edge_admin::run(*command),
        None => run_edge(args.run),
    }
}

/// One grant: agents whose certificate CN matches the glob `agents` may publish hostnames
/// matching one of `hostnames`. `--grant AGENT=HOSTS` and `[[edge.grants]]` both come here.
pub(crate) fn grant_of<'a>(
    agents: &str,
    hostnames: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Grant> {
    let agents = AgentSelector::parse("common_name", agents.trim()).context("the agent pattern")?;
    let hostnames = hostnames
        .into_iter()
        .map(|glob| HostnameGlob::parse(glob.trim()))
        .collect::<Result<Vec<_>, _>>()
        .context("the hostnames")?;
    Ok(Grant { agents, hostnames })
}

fn parse_grant(text: &str) -> anyhow::Result<Grant> {
    let (agent, hosts) = text.split_once('=').with_context(|| {
        format!("--grant {text:?}: give AGENT=HOSTS, e.g. 'ci-*=*.ci.example.com'")
    })?;
    grant_of(agent, hosts.split(',')).with_context(|| format!("--grant {text:?}"))
}

/// The edge's settings from its flags.
fn settings_from_flags(args: &EdgeRunArgs) -> anyhow::Result<EdgeSettings> {
    let grants = args
        .grants
        .iter()
        .map(|text| parse_grant(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let heartbeat_tolerance = moat_config::parse_duration(&args.heartbeat_tolerance)
        .map_err(|problem| anyhow::anyhow!("--heartbeat-tolerance: {problem}"))?;
    if let Some(domain) = &args.domain
        && !moat_config::valid_domain(domain)
    {
        anyhow::bail!(
            "--domain {domain:?}: give a hostname or a wildcard such as '*.tunnel.example.com'"
        );
    }
    Ok(EdgeSettings {
        listen: args.listen,
        agent_listen: args.agent_listen,
        agent_names: args.agent_names.clone(),
        domain: args.domain.clone(),
        crt: args.crt.clone(),
        key: args.key.clone(),
        agent_cas: args.agent_cas.clone(),
        grants,
        heartbeat_tolerance,
        moat_home: moat_home()?,
        admin_listen: match args.admin_listen.as_str() {
            "off" => None,
            text => Some(text.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--admin-listen {text:?}: give IP:PORT (e.g. 127.0.0.1:9443) or off"
                )
            })?),
        },
        admin_cas: args.admin_cas.clone(),
        store: args.store.location()?,
    })
}

/// The edge's settings from the `[edge]` table of an already validated file.
fn settings_from_file(
    edge: &EdgeConfig,
    file: &Path,
    store: &StoreArgs,
) -> anyhow::Result<EdgeSettings> {
    let grants = edge
        .grants
        .iter()
        .enumerate()
        .map(|(index, grant)| {
            grant_of(&grant.agents, grant.hostnames.iter().map(String::as_str))
                .with_context(|| format!("{}: edge.grants[{index}]", file.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(EdgeSettings {
        listen: edge.listen,
        agent_listen: edge.agent_listen,
        agent_names: edge.agent_names.clone(),
        domain: edge.domain.clone(),
        crt: edge.crt.clone(),
        key: edge.key.clone(),
        agent_cas: edge.agent_cas.clone(),
        grants,
        heartbeat_tolerance: edge.heartbeat_tolerance,
        moat_home: moat_home()?,
        admin_listen: edge.admin_listen,
        admin_cas: edge.admin_cas.clone(),
        store: store.location()?.or_else(|| edge.store.clone()),
    })
}

fn run_edge(args: EdgeRunArgs) -> anyhow::Result<()> {
    init_logging(&args.log.log_format);
    // From the file: its [edge] table, and its audit_log and metrics_listen unless the flags
    // say otherwise.
    let (settings, telemetry_config) = match &args.config {
        Some(file) => {
            let config = Config::from_toml_file(file)?;
            let edge = config.edge.as_ref().with_context(|| {
                format!(
                    "{}: no [edge] table; add one (its keys are moat edge's settings: listen, \
                     agent_listen, domain, ...)",
                    file.display()
                )
            })?;
            (
                settings_from_file(edge, file, &args.store)?,
                config.telemetry,
            )
        }
        None => (settings_from_flags(&args)?, TelemetryConfig::default()),
    };
    let metrics_listen = args.log.metrics_listen.or(telemetry_config.metrics_listen);
    let state_dir = settings.state_dir();
    let (audit, telemetry) = open_telemetry(&args.log, telemetry_config.audit_log)?;
    let runtime = runtime_for(worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_signal();
        serve_metrics(metrics_listen, &telemetry).await?;
        let edge = Edge::bind(settings, telemetry.clone()).await?;
        let agent_addr = edge.agent_addr();
        std::fs::write(state_dir.join(ADDRESS_FILE), edge.token_address()).with_context(|| {
            format!("cannot record the agent address in {}", state_dir.display())
        })?;
        let admin_file = state_dir.join(ADMIN_ADDRESS_FILE);
        match edge.admin_addr() {
            Some(admin) => {
                let url = format!("https://{admin}");
                std::fs::write(&admin_file, &url).with_context(|| {
                    format!(
                        "cannot record the admin API's address in {}",
                        state_dir.display()
                    )
                })?;
                println!("moat: edge admin API on {url}");
            }
            None => {
                let _ = std::fs::remove_file(&admin_file);
            }
        }
        // Tests and scripts parse these lines; keep the address last.
        println!("moat: edge agent listener on {agent_addr}");
        println!("moat: edge public listener on {}", edge.public_addr());
        println!("moat: make a join token with: moat edge token --grant 'HOSTNAME-GLOB'");
        edge.serve(shutdown).await?;
        anyhow::Ok(())
    });
    audit.close();
    outcome
}

fn print_token(args: TokenArgs) -> anyhow::Result<()> {
    let state_dir = moat_home()?.join("edge");
    let edge_address = match &args.edge_address {
        Some(address) => address.clone(),
        None => std::fs::read_to_string(state_dir.join(ADDRESS_FILE))
            .map(|text| text.trim().to_owned())
            .map_err(|_| {
                anyhow::anyhow!(
                    "no edge has started with MOAT_HOME={}; start `moat edge` first or give --edge-address HOST:PORT",
                    state_dir.parent().map_or(String::new(), |home| home.display().to_string())
                )
            })?,
    };
    let grant = args
        .grants
        .iter()
        .map(|glob| HostnameGlob::parse(glob))
        .collect::<Result<Vec<_>, _>>()
        .context("--grant")?;
    let ttl: Duration = moat_config::parse_duration(&args.ttl)
        .map_err(|problem| anyhow::anyhow!("--ttl: {problem}"))?;
    let store_location = args
        .store
        .location()?
        .unwrap_or_else(|| state_dir.join("store.db").display().to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let token = runtime.block_on(async {
        let store = Store::open(&store_location).await?;
        let state = EdgeState::open(&state_dir, None, store)
            .await
            .context("cannot open the edge's state")?;
        let (token, _) = state
            .new_token(&edge_address, grant, ttl, now)
            .await
            .context("cannot make a join token")?;
        anyhow::Ok(token)
    })?;
    println!("{}", token.to_text());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_flag_and_a_grant_table_read_alike() {
        let flag = parse_grant("ci-*=*.ci.example.com, status.example.com").unwrap();
        let table = grant_of("ci-*", ["*.ci.example.com", "status.example.com"]).unwrap();
        for grant in [flag, table] {
            assert_eq!(
                grant.agents.to_string(),
                AgentSelector::parse("common_name", "ci-*")
                    .unwrap()
                    .to_string()
            );
            let hostnames: Vec<String> = grant.hostnames.iter().map(ToString::to_string).collect();
            assert_eq!(hostnames, ["*.ci.example.com", "status.example.com"]);
        }
        assert!(parse_grant("ci-*").is_err());
        assert!(parse_grant("=a.example.com").is_err());
        assert!(parse_grant("ci-*=*.com").is_err());
    }
}
