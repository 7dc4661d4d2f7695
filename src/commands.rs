//! What each command of the binary runs. The roles themselves live in their crates
//! (`petportrait-api`, `-worker`, `-scheduler`); this module connects them to the
//! configuration, the services and the process's signals.

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::services::{SchemaPolicy, Services};
use petportrait_core::storage::EmbeddedS3;
use tokio::net::TcpListener;

/// The whole service in one process: embedded mode, or every role against the
/// distributed services. Applies migrations first.
pub async fn serve_all(config: Config) -> anyhow::Result<()> {
    let services = Services::connect(&config, SchemaPolicy::Migrate).await.context("connecting services")?;
    let listener = bind_api(&config).await?;
    tracing::info!(mode = if config.is_embedded() { "embedded" } else { "all-in-one" }, config = %config.summary(), "starting");
    println!("PetPortrait is running at {}", config.public_url);
    let studio = petportrait_studio::from_config(&config).await.context("setting up the studios")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    let result = petportrait::run(config, services.clone(), studio, listener, petportrait::Roles::ALL, shutdown).await;
    services.close().await;
    result
}

/// The Procfile's `web` process. Expects the schema migrated by `migrate`.
pub async fn serve_api(config: Config) -> anyhow::Result<()> {
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let listener = bind_api(&config).await?;
    tracing::info!(url = %config.public_url, "API listening");
    let shutdown = petportrait_core::shutdown::on_signal();
    let result = petportrait_api::run(&config, services.clone(), listener, shutdown).await.context("serving");
    services.close().await;
    result
}

/// The Procfile's `worker` process; start more to scale out.
pub async fn work(config: Config) -> anyhow::Result<()> {
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    let metrics = serve_metrics(&config).await?;
    let studio = petportrait_studio::from_config(&config).await.context("setting up the studios")?;
    let result = petportrait_worker::run(config, services.clone(), studio, shutdown).await.context("running workers");
    // Served until the drain is over, so the last scrape sees the last jobs.
    metrics.cancel();
    services.close().await;
    result
}

/// The Procfile's `scheduler` process.
pub async fn schedule(config: Config) -> anyhow::Result<()> {
    let services = Services::connect(&config, SchemaPolicy::RequireCurrent).await.context("connecting services")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    let metrics = serve_metrics(&config).await?;
    petportrait_scheduler::run(&config, &services, shutdown).await;
    metrics.cancel();
    services.close().await;
    Ok(())
}

/// `/metrics` on `METRICS_PORT`, when set, for a process without the API, until the
/// returned token is cancelled.
async fn serve_metrics(config: &Config) -> anyhow::Result<tokio_util::sync::CancellationToken> {
    let stop = tokio_util::sync::CancellationToken::new();
    let Some(port) = config.metrics_port else { return Ok(stop) };
    petportrait_core::metrics::install();
    let listener =
        TcpListener::bind((config.host, port)).await.with_context(|| format!("binding METRICS_PORT {port}"))?;
    tracing::info!(address = %listener.local_addr()?, "metrics served at /metrics");
    tokio::spawn(petportrait_api::serve_metrics_only(listener, stop.clone()));
    Ok(stop)
}

/// The Procfile's `release` step: the only process of the distributed mode that
/// migrates. Rows written before encryption at rest are sealed right after.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let accounts = connect_accounts(&config).await?;
    let report = accounts.reseal_all().await.context("sealing accounts")?;
    println!("migrations applied; {} of {} accounts sealed anew", report.resealed, report.examined);
    Ok(())
}

/// After a key rotation (`ENCRYPTION_KEY` new, the old one in `ENCRYPTION_PREVIOUS_KEYS`):
/// reseals every account under the newest key. The old key can be dropped after it.
pub async fn reencrypt(config: Config) -> anyhow::Result<()> {
    let accounts = connect_accounts(&config).await?;
    let report = accounts.reseal_all().await.context("resealing accounts")?;
    let secrets = petportrait_core::webhooks::reseal_secrets(accounts.db(), accounts.keyring())
        .await
        .context("resealing webhook secrets")?;
    println!(
        "{} accounts examined, {} resealed, {secrets} webhook secrets resealed, under key {}",
        report.examined,
        report.resealed,
        accounts.keyring().newest_key_id()
    );
    Ok(())
}

async fn connect_accounts(config: &Config) -> anyhow::Result<petportrait_core::accounts::Accounts> {
    prepare_data_dir(config)?;
    let db = petportrait_core::db::Db::connect(&config.database).await.context("connecting to the database")?;
    db.migrate().await.context("applying migrations")?;
    let keyring = petportrait_core::services::load_keyring(config).context("loading the encryption keys")?;
    Ok(petportrait_core::accounts::Accounts::new(db, std::sync::Arc::new(keyring)))
}

/// DATA_DIR/objects as an S3-compatible server, for a distributed mode on one machine.
pub async fn s3_server(config: Config, port: u16) -> anyhow::Result<()> {
    let (access, secret) = config
        .s3
        .credentials
        .clone()
        .context("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: clients must sign with the same keys")?;
    let listener = TcpListener::bind((config.host, port)).await.with_context(|| format!("binding port {port}"))?;
    let server = EmbeddedS3::start(&config.data_dir.join("objects"), listener, access, secret)?;
    println!("S3-compatible server at {} over {}", server.endpoint(), config.data_dir.join("objects").display());
    petportrait_core::shutdown::on_signal().cancelled().await;
    server.stop().await;
    Ok(())
}

async fn bind_api(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("binding the API address {}:{}", config.host, config.port))
}

/// `DATA_DIR`, for the commands that open the SQLite file without `Services`.
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    config.prepare_data_dir().with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))
}
