//! `moat http`, `moat tls` and `moat start`: build a Config from flags or a file and run the
//! gateway until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use moat_config::{Config, EndpointSpec, FieldStyle, TimeoutsSpec};
use moat_gateway::{Gateway, GatewayOptions};
use moat_telemetry::Telemetry;
use moat_telemetry::audit::{AuditLog, AuditTarget};
use moat_telemetry::health::MetricsServer;

use super::inspect::{self, InspectArgs};
use super::reload::{self, ConfigSource};

/// Flags every serving command shares: logging, audit events, metrics and the connection cap.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr: human-readable text or one JSON object per line.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Append audit events (one JSON object per line per handshake and request) to FILE;
    /// `-` or absent: stdout. Overrides audit_log in the config file.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics and probes at /healthz and /readyz
    /// (e.g. 127.0.0.1:9090). Overrides metrics_listen in the config file.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Client connections served at once across every endpoint (default 10000); one more is
    /// closed on arrival. Overrides max_connections in the config file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
}

/// Flags that `moat http` and `moat tls` share: where to listen, which certificate to show and
/// which clients to let in.
#[derive(Debug, Clone, clap::Args)]
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
    /// Leave the accepted CAs' names out of the CertificateRequest (large bundles overflow it).
    #[arg(long)]
    pub no_ca_hints: bool,
    /// Turn off TLS session resumption (session ids and tickets): every connection makes a full
    /// handshake and its certificate is verified again.
    #[arg(long)]
    pub no_session_resumption: bool,
    /// What a CRL past its nextUpdate does: warn (log loudly, keep serving) or refuse (refuse
    /// every client of its CA with unknown_ca).
    #[arg(long, value_name = "POLICY", value_parser = ["warn", "refuse"])]
    pub crl_expired: Option<String>,
    /// Access rules: a TOML file of [[rules]] tables, as [[endpoints.rules]] in moat.toml.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Reload when the certificate, key, a CA, a CRL, the upstream CA or the --policy file
    /// changes (checked every second); SIGHUP reloads with or without it.
    #[arg(long)]
    pub watch: bool,
    /// Publish through the moat edge at HOST:PORT (its agent listener) instead of listening:
    /// this process dials out and the edge serves the public hostname (--domain; without it
    /// the edge assigns one). Needs `moat agent join` first. Repeat it for several edges
    /// sharing one store: the agent keeps a session to each (and to each address a name
    /// resolves to), so any of them serves the hostname.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "watch")]
    pub edge: Vec<String>,
    /// Where TLS is terminated when publishing through an edge: edge (the edge holds the
    /// certificate and checks clients with the CAs uploaded to it) or agent (the edge relays
    /// the encrypted bytes by SNI and this process terminates them). Without --edge this
    /// process is the only one, and TLS ends here either way.
    #[arg(long, value_name = "WHERE", value_parser = ["edge", "agent"])]
    pub terminate_at: Option<String>,
    /// Share the hostname with other agents that publish it with --pool: new connections go
    /// to the member with the fewest open streams.
    #[arg(long, requires = "edge")]
    pub pool: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Flags of `moat http`.
#[derive(Debug, Clone, clap::Args)]
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
    /// Time moat may wait in all for a slow client's request body before a 408 (default 20s),
    /// extended by one second per --request-body-min-rate bytes received.
    #[arg(long, value_name = "DURATION")]
    pub request_body_timeout: Option<String>,
    /// Bytes of request body that earn one more second of --request-body-timeout (default 500;
    /// 0 adds nothing).
    #[arg(long, value_name = "BYTES")]
    pub request_body_min_rate: Option<u64>,
    /// HTTP version spoken to the upstream: http2 (gRPC; h2c to http://, ALPN h2 to https://),
    /// http1, or auto (default): HTTP/2 for gRPC requests and for https:// upstreams that offer
    /// it by ALPN.
    #[arg(long, value_name = "PROTOCOL", value_parser = ["auto", "http1", "http2"])]
    pub upstream_protocol: Option<String>,
    #[command(flatten)]
    pub inspect: InspectArgs,
}

/// Flags of `moat tls`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// The TCP service to forward to: PORT, HOST:PORT or tcp://HOST:PORT.
    #[arg(value_name = "UPSTREAM")]
    pub upstream: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Send a PROXY protocol header (version 1 or 2) at the start of each upstream connection;
    /// v2 also carries the TLS version, the SNI and the client certificate's CN.
    #[arg(long, value_name = "VERSION", value_parser = ["1", "2"])]
    pub upstream_proxy_protocol: Option<String>,
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
    /// Reload when the configuration file or any certificate, key, CA or CRL it names changes
    /// (checked every second); SIGHUP reloads with or without it.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl EndpointArgs {
    /// The spec fields both commands fill in the same way.
    fn spec(&self, kind: &str, upstream: &str) -> EndpointSpec {
        EndpointSpec {
            name: self.name.clone(),
            kind: Some(kind.to_string()),
            listen: Some(self.listen.clone()),
            domain: Some(self.domain.clone()),
            upstream: Some(upstream.to_string()),
            crt: self.crt.clone(),
            key: self.key.clone(),
            mutual_tls_cas: self.mutual_tls_cas.clone(),
            crls: self.crls.clone(),
            tls_min_version: self.tls_min_version.clone(),
            ca_hints: self.no_ca_hints.then_some(false),
            session_resumption: self.no_session_resumption.then_some(false),
            crl_expired: self.crl_expired.clone(),
            timeouts: TimeoutsSpec {
                request_header: self.request_header_timeout.clone(),
                idle: self.idle_timeout.clone(),
                upstream_connect: self.upstream_connect_timeout.clone(),
                upstream_response: None,
                request_body: None,
                request_body_min_rate: None,
            },
            policy_file: self.policy.clone(),
            terminate_at: self.terminate_at.clone(),
            publish: (!self.edge.is_empty()).then_some(true),
            pool: self.pool.then_some(true),
            ..EndpointSpec::default()
        }
    }
}

/// Reads the rules of `--policy FILE` into the spec, where they are checked with the endpoint.
fn load_policy(spec: &mut EndpointSpec) -> anyhow::Result<()> {
    if let Some(file) = &spec.policy_file {
        spec.rules = moat_config::read_policy_file(file)?;
    }
    Ok(())
}

/// The configuration of `moat http`'s flags, reading the `--policy` file.
fn http_config(args: &HttpArgs) -> anyhow::Result<Config> {
    let mut spec = args.endpoint.spec("http", &args.upstream);
    spec.client_auth = args.client_auth.clone();
    spec.upstream_ca = args.upstream_ca.clone();
    spec.timeouts.upstream_response = args.upstream_response_timeout.clone();
    spec.timeouts.request_body = args.request_body_timeout.clone();
    spec.timeouts.request_body_min_rate = args.request_body_min_rate;
    spec.upstream_protocol = args.upstream_protocol.clone();
    load_policy(&mut spec)?;
    Ok(Config::from_specs(
        vec![spec],
        None,
        "moat http",
        FieldStyle::Flags,
    )?)
}

/// The configuration of `moat tls`'s flags, reading the `--policy` file.
fn tls_config(args: &TlsArgs) -> anyhow::Result<Config> {
    let mut spec = args.endpoint.spec("tls", &args.upstream);
    spec.upstream_proxy_protocol = args.upstream_proxy_protocol.clone();
    load_policy(&mut spec)?;
    Ok(Config::from_specs(
        vec![spec],
        None,
        "moat tls",
        FieldStyle::Flags,
    )?)
}

/// Runs `moat http`.
pub fn run_http(args: HttpArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.clone();
    let inspect = args.inspect.clone();
    serve_flags(
        &endpoint,
        Some(&inspect),
        Arc::new(move || http_config(&args)),
    )
}

/// Runs `moat tls`.
pub fn run_tls(args: TlsArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.clone();
    serve_flags(&endpoint, None, Arc::new(move || tls_config(&args)))
}

/// Serves the endpoint of `moat http|tls`. The flags cannot change, but the files they name
/// can: every reload builds the configuration from the flags again, so the `--policy` file is
/// read again with the certificates, CAs and CRLs; `--watch` polls all of them.
fn serve_flags(
    endpoint: &EndpointArgs,
    inspect: Option<&InspectArgs>,
    source: ConfigSource,
) -> anyhow::Result<()> {
    let config = source()?;
    if !endpoint.edge.is_empty() {
        return super::agent::publish(config, &endpoint.log, endpoint.edge.clone(), inspect);
    }
    serve(
        config,
        &endpoint.log,
        source,
        endpoint.watch.then(Vec::new),
        inspect,
    )
}

/// Runs `moat start`.
pub fn run_start(args: StartArgs) -> anyhow::Result<()> {
    let (path, names, all) = (args.config.clone(), args.names.clone(), args.all);
    let load = move || -> anyhow::Result<Config> {
        let config = Config::from_toml_file(&path)?;
        Ok(if all {
            config
        } else {
            config.select(&names, &path.display().to_string())?
        })
    };
    let config = load()?;
    let file = args.config.display();
    if config.endpoints.is_empty() {
        anyhow::bail!(
            "{file}: no endpoints to start; add [[endpoints]] tables (an [edge] table runs with \
             `moat edge --config {file}`)"
        );
    }
    let (published, local): (Vec<_>, Vec<_>) = config
        .endpoints
        .iter()
        .partition(|endpoint| endpoint.publish);
    if !published.is_empty() {
        if let Some(endpoint) = local.first() {
            anyhow::bail!(
                "{file}: endpoint {} is published through the edge (publish = true) and {} \
                 listens here; one `moat start` does one or the other: start them separately \
                 by name (moat start --config {file} NAME...)",
                published[0].name,
                endpoint.name
            );
        }
        if args.watch {
            anyhow::bail!(
                "{file}: --watch reloads listening endpoints only; published ones (publish = \
                 true) are not reloaded: restart the agent to apply a change"
            );
        }
        // Validation refuses published endpoints without an [agent] table.
        let edges = config
            .agent
            .as_ref()
            .map(|agent| agent.edges.clone())
            .with_context(|| format!("{file}: publish = true needs an [agent] table"))?;
        return super::agent::publish(config, &args.log, edges, None);
    }
    // A reload keeps listening endpoints listening: one marked publish = true since is refused.
    let origin = args.config.display().to_string();
    let source: ConfigSource = Arc::new(move || {
        let config = load()?;
        if let Some(endpoint) = config.endpoints.iter().find(|endpoint| endpoint.publish) {
            anyhow::bail!(
                "{origin}: endpoint {} is now published through the edge (publish = true); a \
                 reload does not move an endpoint to the edge: restart moat",
                endpoint.name
            );
        }
        Ok(config)
    });
    let watch = args.watch.then(|| vec![args.config.clone()]);
    serve(config, &args.log, source, watch, None)
}

/// Starts logging, the audit stream and the metrics listener, binds every endpoint, prints where
/// each listens, reloads on SIGHUP (and with `watch` when a file of the endpoints or one of the
/// files it lists, the configuration file, changes) and serves until a signal; with `inspect`,
/// the request inspector sees every exchange.
fn serve(
    config: Config,
    log: &LogArgs,
    source: ConfigSource,
    watch: Option<Vec<PathBuf>>,
    inspect: Option<&InspectArgs>,
) -> anyhow::Result<()> {
    // The flag wins over the file, at start and at every reload.
    let cap = log
        .max_connections
        .and_then(|cap| usize::try_from(cap).ok());
    let with_cap = move |mut config: Config| {
        if let Some(cap) = cap {
            config.max_connections = cap;
        }
        config
    };
    let config = with_cap(config);
    let source: ConfigSource = Arc::new(move || source().map(with_cap));
    init_logging(&log.log_format);
    crate::memcpy_tuning::log_if_tuned();
    let (audit, telemetry) = open_telemetry(log, config.telemetry.audit_log.clone())?;
    let metrics_listen = log.metrics_listen.or(config.telemetry.metrics_listen);
    for endpoint in &config.endpoints {
        for warning in moat_policy::lint(&endpoint.rules) {
            tracing::warn!(endpoint = %endpoint.name, "{warning}");
        }
    }
    let mut options = GatewayOptions {
        moat_home: moat_home()?,
        telemetry: telemetry.clone(),
        upstream_routes: None,
        strict_sni: false,
        streams_only: false,
        request_observer: None,
    };
    let runtime = runtime_for(worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        let shutdown = shutdown_signal();
        serve_metrics(metrics_listen, &telemetry).await?;
        let inspector = match inspect {
            Some(inspect) => inspect::start(inspect, &telemetry).await?,
            None => None,
        };
        options.request_observer = inspector.as_ref().map(inspect::Started::observer);
        let gateway = Gateway::bind(&config, &options).await?;
        if let Some(mut started) = inspector {
            started.announce();
            started.inspector.set_endpoints(inspect::served_endpoints(
                &config,
                gateway
                    .endpoints()
                    .iter()
                    .map(|bound| (bound.name.as_str(), bound.url.as_str())),
            ));
        }
        let hangups = reload::catch_sighup();
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
        let reloader = gateway.reloader();
        if let Some(hangups) = hangups {
            tokio::spawn(reload::reload_on_sighup(
                hangups,
                reloader.clone(),
                Arc::clone(&source),
            ));
        }
        if let Some(also_watched) = watch {
            tokio::spawn(reload::reload_on_change(reloader, source, also_watched));
        }
        gateway.serve(shutdown).await?;
        anyhow::Ok(())
    });
    // Every event of the drained connections is written before moat exits.
    audit.close();
    served
}

/// The audit stream (`--audit-log`, else `configured`, else stdout) and the telemetry that
/// writes to it.
pub(crate) fn open_telemetry(
    log: &LogArgs,
    configured: Option<PathBuf>,
) -> anyhow::Result<(AuditLog, Telemetry)> {
    let audit_log = match &log.audit_log {
        Some(path) if path.as_os_str() == "-" => None,
        Some(path) => Some(path.clone()),
        None => configured,
    };
    let audit_target = audit_log.map_or(AuditTarget::Stdout, AuditTarget::File);
    let audit = AuditLog::open(&audit_target)?;
    let telemetry = Telemetry::new(Some(audit.clone()));
    Ok((audit, telemetry))
}

/// Serves Prometheus metrics on `address` (when given) and prints where.
pub(crate) async fn serve_metrics(
    address: Option<SocketAddr>,
    telemetry: &Telemetry,
) -> anyhow::Result<()> {
    if let Some(address) = address {
        let metrics = MetricsServer::bind(address, telemetry.clone()).await?;
        // Tests and scripts parse this line; keep the address last.
        println!("moat: metrics listening on http://{}", metrics.local_addr());
        tokio::spawn(metrics.serve());
    }
    Ok(())
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is called, and returns a future
/// that resolves when either arrives. The handlers are installed here rather than at the future's
/// first poll so that a signal sent right after the ready line (scripts do this) stops moat
/// gracefully instead of killing it. Must be called inside the runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::error!(%error, "cannot listen for {name}; stop moat with the other signal");
            None
        }
    };
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        let received = |stream: Option<tokio::signal::unix::Signal>| async move {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = received(interrupt) => tracing::info!("SIGINT received"),
            _ = received(terminate) => tracing::info!("SIGTERM received"),
        }
    }
}

/// Logs go to stderr (stdout carries the ready lines); `RUST_LOG` overrides the `info` level.
pub(crate) fn init_logging(format: &str) {
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

/// How many threads serve connections: `TOKIO_WORKER_THREADS` when set (as tokio reads it),
/// else one per CPU moat may run on (its affinity mask, so `taskset` counts).
pub(crate) fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|threads| *threads > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The runtime for `threads` workers. With one, everything runs on the thread that starts the
/// gateway: a multi-threaded runtime would still hand each connection from the accepting thread
/// to its single worker and wake one from the other, which on one CPU costs a context switch.
pub(crate) fn runtime_for(threads: usize) -> tokio::runtime::Builder {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}
