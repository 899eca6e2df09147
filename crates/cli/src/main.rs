//! The `moat` command line: parses flags into library calls and reports errors with context.

#![forbid(unsafe_code)]

mod commands;
mod flags;
mod memcpy_tuning;

use clap::{Parser, Subcommand};

/// Mutual-TLS authentication in front of any service, and the PKI to go with it.
#[derive(Debug, Parser)]
#[command(name = "moat", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The jobs moat does; each lives in its own module under `commands/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Make and inspect certificates: CAs, client and server certificates, CSRs, CRLs, PKCS#12.
    #[command(subcommand)]
    Pki(commands::pki::PkiCommand),
    /// Serve HTTPS that only lets in clients with a certificate from your CAs, proxying to UPSTREAM.
    Http(commands::serve::HttpArgs),
    /// Terminate TLS, demand a client certificate, and forward the byte stream to a TCP UPSTREAM.
    Tls(commands::serve::TlsArgs),
    /// Run the endpoints of a moat.toml configuration file.
    Start(commands::serve::StartArgs),
    /// Run a public edge that agents publish their services through, or make join tokens.
    Edge(commands::edge::EdgeArgs),
    /// Join an edge as an agent (then publish with `moat http|tls --edge`).
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// Validate a moat.toml configuration file.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Run the gateway's checks on a client certificate and explain the verdict step by step.
    Verify(commands::verify::VerifyArgs),
    /// Review audit logs: `moat audit report` sums them up as Markdown, JSON or an HTML page.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Show mTLS end to end in a temporary directory: a refused and an accepted request.
    Demo(commands::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Http(_)
            | Command::Tls(_)
            | Command::Start(_)
            | Command::Edge(commands::edge::EdgeArgs { command: None, .. })
    ) {
        memcpy_tuning::reexec_with_vector_memcpy();
    }
    let outcome = match cli.command {
        Command::Pki(command) => commands::pki::run(command),
        Command::Http(args) => commands::serve::run_http(args),
        Command::Tls(args) => commands::serve::run_tls(args),
        Command::Start(args) => commands::serve::run_start(args),
        Command::Edge(args) => commands::edge::run(args),
        Command::Agent(command) => commands::agent::run(command),
        Command::Config(command) => commands::config::run(command),
        Command::Demo(args) => commands::demo::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Audit(command) => commands::audit::run(command),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat: {}", error_report(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. The library errors already quote their cause in their
/// own message (so that they read well alone), so a cause whose text is already shown is skipped
/// rather than printed twice. A library error whose fix is a flag is shown in its flag wording
/// ([`flags::with_flag`]), also where an outer message quotes it.
pub(crate) fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let shown = flags::with_flag(cause);
        if report.contains(&text) {
            if let Some(shown) = shown {
                report = report.replace(&text, &shown);
            }
            continue;
        }
        let shown = shown.unwrap_or(text);
        if report.contains(&shown) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&shown);
    }
    report
}
