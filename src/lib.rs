//! The whole service in one process: API, workers and scheduler sharing one set of
//! services. This is embedded mode (`cargo run --release`), and what the system tests
//! start.

pub mod operator;

use std::sync::Arc;

use petportrait_core::config::Config;
use petportrait_core::services::Services;
use petportrait_studio::Studio;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which roles a process runs.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub web: bool,
    pub worker: bool,
    pub scheduler: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { web: true, worker: true, scheduler: true };
}

/// Runs the selected roles until `shutdown`, then drains them: the API finishes its
/// requests, workers finish their jobs, the scheduler its tick.
pub async fn run(
    config: Config,
    services: Services,
    studio: Arc<dyn Studio>,
    listener: TcpListener,
    roles: Roles,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    if roles.worker {
        let (config, services, studio, shutdown) = (config.clone(), services.clone(), studio.clone(), shutdown.clone());
        tasks.spawn(async move {
            petportrait_worker::run(config, services, studio, shutdown).await.map_err(anyhow::Error::from)
        });
    }
    if roles.scheduler {
        let (config, services, shutdown) = (config.clone(), services.clone(), shutdown.clone());
        tasks.spawn(async move {
            petportrait_scheduler::run(&config, &services, shutdown).await;
            Ok(())
        });
    }
    if roles.web {
        let (config, services, shutdown) = (config.clone(), services.clone(), shutdown.clone());
        tasks.spawn(async move {
            petportrait_api::run(&config, services, listener, shutdown).await.map_err(anyhow::Error::from)
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "a role stopped with an error; shutting down the others");
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}
