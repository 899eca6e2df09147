//! The benchmark's load generator and upstream: drives a gateway over mutual TLS and reports
//! requests per second, p50/p99 latency and throughput, one line per run for bench/run.sh.

mod hold;
mod http_load;
mod tally;
mod tcp_stream;
mod tls;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Load generator for moat's benchmark harness (bench/run.sh).
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What this run does.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send GET requests over mTLS for a fixed time; print req/s, p50 and p99.
    Http(http_load::HttpArgs),
    /// Open and hold many idle mTLS connections (for the gateway's memory per connection).
    Hold(hold::HoldArgs),
    /// Stream bytes through a TLS-to-TCP gateway to the upstream's TCP port; print MB/s.
    Tcp(tcp_stream::TcpArgs),
    /// Serve the plain upstream: HTTP (small responses, downloads, uploads) and a TCP stream port.
    Upstream(upstream::UpstreamArgs),
}

/// How to reach the gateway and which certificates to use on the way.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// Gateway address (loopback).
    #[arg(long, value_name = "ADDR")]
    pub connect: SocketAddr,
    /// Name the server certificate is checked against (SNI).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// CA certificate (PEM) that issued the server certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Parses "15", "15s", "500ms" or "2m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: use e.g. 15s, 500ms or 2m");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(bad()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread: the harness pins the load generator to one core and compares gateways, not
    // client scheduling.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Http(args) => http_load::run(args).await,
            Command::Hold(args) => hold::run(args).await,
            Command::Tcp(args) => tcp_stream::run(args).await,
            Command::Upstream(args) => upstream::run(args).await,
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
