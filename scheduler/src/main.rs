//! `petportrait-scheduler`: the Procfile's `scheduler` process.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::services::{SchemaPolicy, Services};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "petportrait-scheduler: purges expired objects and re-dispatches stalled generations.\nConfigured by environment variables; see README.md."
        );
        return Ok(());
    }
    let config = Config::from_env()?;
    petportrait_core::telemetry::init(&config.log);
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    petportrait_scheduler::run(&config, &services, shutdown).await;
    services.close().await;
    Ok(())
}
