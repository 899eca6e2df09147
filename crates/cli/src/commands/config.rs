//! `moat config`: check a configuration file without starting anything.

use std::path::PathBuf;

use moat_config::Config;

/// The `moat config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a moat.toml file: prints "ok: N endpoints" after any warnings about access
    /// rules (unreachable, or a host/path that cannot match) and notes on what the rules turn
    /// off, or every error with its field.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
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
            let count = config.endpoints.len();
            println!("ok: {count} endpoint{}", if count == 1 { "" } else { "s" });
            Ok(())
        }
    }
}
