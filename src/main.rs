//! `petportrait`: with no argument, the whole service in one process (embedded mode).
//! `petportrait migrate` applies migrations (the Procfile's `release` step);
//! `petportrait s3-server` serves DATA_DIR/objects as a stand-alone S3-compatible server.
//! `petportrait queue …` inspects the queue and works its dead set (see `ops.rs`).

mod ops;

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::services::{SchemaPolicy, Services};
use petportrait_core::storage::EmbeddedS3;
use tokio::net::TcpListener;

const HELP: &str = "\
petportrait: AI pet portraits as a job-queue service.

USAGE:
    petportrait              run API, workers and scheduler in one process
    petportrait migrate      apply database migrations and exit (Procfile: release)
    petportrait s3-server    serve DATA_DIR/objects as an S3-compatible server on S3_SERVER_PORT (default 9000)
    petportrait queue stats                 jobs ready, delayed (retries), running, dead, recently finished
    petportrait queue dead [LIMIT]          the dead set, oldest first (default 50)
    petportrait queue replay TASK...        put dead jobs back in line with fresh attempts
    petportrait queue replay-all            replay the whole dead set
    petportrait queue purge-dead            delete the whole dead set

Configuration comes from environment variables (see README.md and .env.example).";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = std::env::args().nth(1);
    if matches!(command.as_deref(), Some("--help" | "-h" | "help")) {
        println!("{HELP}");
        return Ok(());
    }
    let config = Config::from_env()?;
    petportrait_core::telemetry::init(&config.log);
    match command.as_deref() {
        None => serve_all(config).await,
        Some("migrate") => migrate(config).await,
        Some("s3-server") => s3_server(config).await,
        Some("queue") => {
            ensure_data_dir(&config)?;
            ops::queue_command(config, std::env::args().skip(2).collect()).await
        }
        Some(other) => anyhow::bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

async fn serve_all(config: Config) -> anyhow::Result<()> {
    let services = Services::connect(&config, SchemaPolicy::Migrate).await.context("connecting services")?;
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    tracing::info!(mode = if config.is_embedded() { "embedded" } else { "all-in-one" }, config = %config.summary(), "starting");
    println!("PetPortrait is running at {}", config.public_url);
    let studio = petportrait_core::studio::from_config(&config).context("setting up the studios")?;
    let shutdown = petportrait_core::shutdown::on_signal();
    let result = petportrait::run(config, services.clone(), studio, listener, petportrait::Roles::ALL, shutdown).await;
    services.close().await;
    result
}

/// SQLite creates its file but not the folder it lives in.
fn ensure_data_dir(config: &Config) -> anyhow::Result<()> {
    if config.is_embedded() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
    }
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    ensure_data_dir(&config)?;
    let db = petportrait_core::db::Db::connect(&config.database).await.context("connecting to the database")?;
    db.migrate().await.context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}

async fn s3_server(config: Config) -> anyhow::Result<()> {
    let port: u16 = match std::env::var("S3_SERVER_PORT") {
        Err(_) => 9000,
        Ok(text) => {
            text.trim().parse().with_context(|| format!("S3_SERVER_PORT: expected a port number, got {text:?}"))?
        }
    };
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
