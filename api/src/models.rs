//! Which styles can run now. Kinds on the local studio or a hosted provider always can;
//! a style on Cog model servers can when some worker's health checks recently saw one
//! of its servers ready or busy (`model_availability`, one report per worker: the API
//! never calls a model server).

use std::collections::HashSet;
use std::time::Duration;

use petportrait_core::config::{ModelBackend, ModelsConfig};
use petportrait_core::db::{Db, DbResult};
use petportrait_core::domain::GenerationKind;
use petportrait_core::time::now_ms;

/// A report older than this means no worker is watching the servers.
pub fn freshness(config: &ModelsConfig) -> Duration {
    let interval = config.cog.as_ref().map_or(Duration::from_secs(5), |c| c.health_interval);
    (interval * 3).max(Duration::from_secs(15))
}

/// The styles of `kind` that can run now; `None` when every style can.
pub async fn available_styles(
    config: &ModelsConfig,
    db: &Db,
    kind: GenerationKind,
) -> DbResult<Option<HashSet<String>>> {
    if config.backend(kind) != ModelBackend::Cog {
        return Ok(None);
    }
    let fresh_after = now_ms() - freshness(config).as_millis() as i64;
    let reports = db.model_availability(kind, fresh_after).await?;
    // Any worker that sees a server of the style ready is enough.
    Ok(Some(reports.into_iter().filter(|r| r.available).map(|r| r.style).collect()))
}

/// Seconds a client should wait before asking again about an unavailable style.
pub fn retry_after_secs(config: &ModelsConfig) -> u32 {
    config.cog.as_ref().map_or(5, |c| c.health_interval.as_secs().max(1) as u32)
}
