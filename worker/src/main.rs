//! `petportrait-worker`: the Procfile's `worker` process. Start more to scale out.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::services::{SchemaPolicy, Services};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "petportrait-worker: runs generation jobs from the queue.\nConfigured by environment variables; see README.md."
        );
        return Ok(());
    }
    let config = Config::from_env()?;
    petportrait_core::telemetry::init(&config.log);
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    let studio = petportrait_core::studio::from_config(&config).context("setting up the studios")?;
    petportrait_worker::run(config, services.clone(), studio, shutdown).await.context("running workers")?;
    services.close().await;
    Ok(())
}
