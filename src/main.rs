//! `petportrait`: the one binary. With no command (or `all`) it runs the whole service
//! in one process; `api`, `worker` and `scheduler` run one role each (the Procfile);
//! `migrate`, `s3-server` and `queue …` are the release step and operator commands.
//! `petportrait --help` lists them.

mod cli;
mod commands;
mod ops;

use clap::Parser;
use petportrait_core::config::Config;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    petportrait_core::telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::All) {
        Command::All => commands::serve_all(config).await,
        Command::Api => commands::serve_api(config).await,
        Command::Worker => commands::work(config).await,
        Command::Scheduler => commands::schedule(config).await,
        Command::Migrate { status: false, .. } => commands::migrate(config).await,
        Command::Migrate { status: true, json } => ops::migration_status(config, json).await,
        Command::Credits { command } => ops::credits_command(config, command).await,
        Command::Policy { command } => ops::policy_command(config, command).await,
        Command::Reencrypt => commands::reencrypt(config).await,
        Command::S3Server { port } => commands::s3_server(config, port).await,
        Command::Queue { command, json } => ops::queue_command(config, command, json).await,
        Command::Generation { command, json } => ops::generation_command(config, command, json).await,
        Command::Users { command, json } => ops::users_command(config, command, json).await,
        Command::Purge { json } => ops::scheduler_command(config, ops::SchedulerWork::Purge, json).await,
        Command::Sweep { json } => ops::scheduler_command(config, ops::SchedulerWork::Sweep, json).await,
    }
}
