//! `petportrait-api`: the Procfile's `web` process.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::services::{SchemaPolicy, Services};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("petportrait-api: serves the HTTP API.\nConfigured by environment variables; see README.md.");
        return Ok(());
    }
    let config = Config::from_env()?;
    petportrait_core::telemetry::init(&config.log);
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let listener = TcpListener::bind((config.host, config.port)).await.context("binding the API address")?;
    tracing::info!(url = %config.public_url, "API listening");
    let shutdown = petportrait_core::shutdown::on_signal();
    petportrait_api::run(&config, services.clone(), listener, shutdown).await.context("serving")?;
    services.close().await;
    Ok(())
}
