//! `moat http`, `moat tls` and `moat start`: build a Config from flags or a file and run the
//! gateway until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use moat_config::{Config, EndpointSpec, FieldStyle, TimeoutsSpec};
use moat_gateway::{Gateway, GatewayOptions};

/// Flags every serving command shares: logging.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr: human-readable text or one JSON object per line.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Flags that `moat http` and `moat tls` share: where to listen, which certificate to show and
/// which clients to let in.
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// Endpoint name used in logs (default: the command name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = moat_config::DEFAULT_LISTEN)]
    pub listen: String,
    /// The hostname served (SNI); also the name in an auto-issued certificate.
    #[arg(long, value_name = "NAME", default_value = moat_config::DEFAULT_DOMAIN)]
    pub domain: String,
    /// Server certificate chain (PEM). Without --crt/--key moat issues one from its local CA
    /// in $MOAT_HOME and prints that CA's path.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub crt: Option<PathBuf>,
    /// Server private key (PEM: PKCS#8, PKCS#1 or SEC1; unencrypted).
    #[arg(long, value_name = "FILE", requires = "crt")]
    pub key: Option<PathBuf>,
    /// PEM file of CAs whose client certificates are accepted (repeatable; a file may hold several CAs).
    #[arg(long = "mutual-tls-cas", value_name = "FILE")]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// Certificate revocation list, PEM or DER, issued by one of the CAs (repeatable).
    #[arg(long = "crl", value_name = "FILE")]
    pub crls: Vec<PathBuf>,
    /// Oldest TLS version accepted.
    #[arg(long, value_name = "VERSION", value_parser = ["1.2", "1.3"])]
    pub tls_min_version: Option<String>,
    /// Time allowed for the TLS handshake and for a request's headers (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub request_header_timeout: Option<String>,
    /// Close a client connection idle for this long (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Time allowed to connect to the upstream (default 5s).
    #[arg(long, value_name = "DURATION")]
    pub upstream_connect_timeout: Option<String>,
    /// Access rules: a TOML file of [[rules]] tables, as [[endpoints.rules]] in moat.toml.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Flags of `moat http`.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// The service to protect: PORT, HOST:PORT, http://HOST:PORT or https://HOST:PORT.
    #[arg(value_name = "UPSTREAM")]
    pub upstream: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// How clients are verified: require-and-verify refuses the handshake without a valid
    /// certificate; request lets a client without one finish it and answers its requests 403.
    #[arg(long, value_name = "STRATEGY", value_parser = ["require-and-verify", "request"])]
    pub client_auth: Option<String>,
    /// CA file verifying an https:// upstream's certificate.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Time the upstream may take to start its response before a 504 (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub upstream_response_timeout: Option<String>,
}

/// Flags of `moat tls`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// The TCP service to forward to: PORT, HOST:PORT or tcp://HOST:PORT.
    #[arg(value_name = "UPSTREAM")]
    pub upstream: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Where TLS is terminated: edge or agent (both terminate in this process until the
    /// edge/agent tunnel exists).
    #[arg(long, value_name = "WHERE", value_parser = ["edge", "agent"])]
    pub terminate_at: Option<String>,
}

/// Flags of `moat start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Endpoints to run, by name.
    #[arg(
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub names: Vec<String>,
    /// Run every endpoint in the file.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl EndpointArgs {
    /// The spec fields both commands fill in the same way.
    fn spec(self, kind: &str, upstream: String) -> (EndpointSpec, LogArgs) {
        let spec = EndpointSpec {
            name: self.name,
            kind: Some(kind.to_string()),
            listen: Some(self.listen),
            domain: Some(self.domain),
            upstream: Some(upstream),
            crt: self.crt,
            key: self.key,
            mutual_tls_cas: self.mutual_tls_cas,
            crls: self.crls,
            tls_min_version: self.tls_min_version,
            timeouts: TimeoutsSpec {
                request_header: self.request_header_timeout,
                idle: self.idle_timeout,
                upstream_connect: self.upstream_connect_timeout,
                upstream_response: None,
            },
            policy_file: self.policy,
            ..EndpointSpec::default()
        };
        (spec, self.log)
    }
}

/// Reads the rules of `--policy FILE` into the spec, where they are checked with the endpoint.
fn load_policy(spec: &mut EndpointSpec) -> anyhow::Result<()> {
    if let Some(file) = &spec.policy_file {
        spec.rules = moat_config::read_policy_file(file)?;
    }
    Ok(())
}

/// Runs `moat http`.
pub fn run_http(args: HttpArgs) -> anyhow::Result<()> {
    let (mut spec, log) = args.endpoint.spec("http", args.upstream);
    spec.client_auth = args.client_auth;
    spec.upstream_ca = args.upstream_ca;
    spec.timeouts.upstream_response = args.upstream_response_timeout;
    load_policy(&mut spec)?;
    let config = Config::from_specs(vec![spec], None, "moat http", FieldStyle::Flags)?;
    serve(config, &log)
}

/// Runs `moat tls`.
pub fn run_tls(args: TlsArgs) -> anyhow::Result<()> {
    let (mut spec, log) = args.endpoint.spec("tls", args.upstream);
    spec.terminate_at = args.terminate_at;
    load_policy(&mut spec)?;
    let config = Config::from_specs(vec![spec], None, "moat tls", FieldStyle::Flags)?;
    serve(config, &log)
}

/// Runs `moat start`.
pub fn run_start(args: StartArgs) -> anyhow::Result<()> {
    let config = Config::from_toml_file(&args.config)?;
    let config = if args.all {
        config
    } else {
        config.select(&args.names, &args.config.display().to_string())?
    };
    serve(config, &args.log)
}

/// Starts logging, binds every endpoint, prints where each listens and serves until a signal.
fn serve(config: Config, log: &LogArgs) -> anyhow::Result<()> {
    init_logging(&log.log_format);
    for endpoint in &config.endpoints {
        for warning in moat_policy::lint(&endpoint.rules) {
            tracing::warn!(endpoint = %endpoint.name, "{warning}");
        }
    }
    let options = GatewayOptions {
        moat_home: moat_home()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::bind(&config, &options).await?;
        for endpoint in gateway.endpoints() {
            if let Some(ca) = &endpoint.local_ca {
                println!(
                    "moat: endpoint {} uses a server certificate from moat's local CA; trust it \
                     with: curl --cacert {} {}/",
                    endpoint.name,
                    ca.display(),
                    endpoint.url
                );
            }
            let scheme = match endpoint.kind {
                moat_config::EndpointKind::Http => "https",
                moat_config::EndpointKind::Tls => "tls",
            };
            // Tests and scripts parse this line; keep the address last.
            println!(
                "moat: endpoint {} listening on {scheme}://{}",
                endpoint.name, endpoint.local_addr
            );
        }
        gateway.serve(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C; stop moat with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stop moat with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Logs go to stderr (stdout carries the ready lines); `RUST_LOG` overrides the `info` level.
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// `$MOAT_HOME`, else `$XDG_DATA_HOME/moat`, else `~/.local/share/moat`.
pub fn moat_home() -> anyhow::Result<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(home) = non_empty("MOAT_HOME") {
        return Ok(PathBuf::from(home));
    }
    if let Some(data) = non_empty("XDG_DATA_HOME") {
        return Ok(Path::new(&data).join("moat"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(Path::new(&home).join(".local/share/moat"));
    }
    anyhow::bail!(
        "cannot tell where moat keeps its data: set MOAT_HOME (or XDG_DATA_HOME or HOME) to a directory"
    )
}
