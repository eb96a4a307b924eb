//! The command line: `tenantry serve`, `tenantry demo`, `tenantry hash-key`.

use crate::application::Application;
use crate::settings::{LogFormat, Overrides, Settings};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Tenantry: a multi-tenant runtime for durable agents and components.
#[derive(Debug, Parser)]
#[command(name = "tenantry", version, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the built-in demo application when no config file is given).
    Serve(ServeArgs),
    /// Run the pod and multi-tenant scenarios in-process and print what happens.
    Demo,
    /// Print the SHA-256 of an API key, as config files hold it.
    HashKey {
        /// The key.
        key: String,
    },
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address [default: 127.0.0.1:7878].
    #[arg(long, env = "TENANTRY_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (the redb store lives here) [default: ./tenantry-data].
    #[arg(long, env = "TENANTRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (without one, the built-in demo application runs).
    #[arg(long, short, env = "TENANTRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format (the filter comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, env = "TENANTRY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run as a node of the cluster whose NATS server this is (`nats://HOST:4222`;
    /// needs the PostgreSQL store).
    #[arg(long, env = "TENANTRY_CLUSTER", value_name = "NATS_URL")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (unique; a-z, 0-9, '-', '_').
    #[arg(long, env = "TENANTRY_NODE")]
    pub node: Option<String>,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Parses the command line and runs it, serving the built-in demo application.
pub fn run() -> ExitCode {
    run_application(Application::demo())
}

/// Parses the command line and runs it, serving `application` (the `main` of a server
/// for an application of one's own).
pub fn run_application(application: Application) -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::HashKey { key } => {
            println!("{}", crate::keys::hash_hex(&key));
            Ok(())
        }
        Command::Demo => {
            crate::telemetry::init_logs(LogFormat::Plain);
            runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(crate::demo::run()))
        }
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                config: args.config,
                log_format: args.log_format,
                cluster: args.cluster,
                node: args.node,
            };
            match Settings::resolve(overrides, |k| std::env::var(k).ok()) {
                Err(e) => Err(anyhow::Error::from(e)),
                Ok(settings) => {
                    crate::telemetry::init_logs(settings.log_format);
                    runtime()
                        .map_err(anyhow::Error::from)
                        .and_then(|rt| rt.block_on(crate::server::serve(&application, settings)))
                }
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenantry: {e:#}");
            ExitCode::FAILURE
        }
    }
}
