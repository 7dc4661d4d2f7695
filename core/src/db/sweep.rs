//! The scheduler's sweep of stalled generations: which have not moved for a while, and
//! recording a new dispatch for one only if nothing changed meanwhile.

use crate::time::Millis;

use super::{Db, DbResult};

/// A generation the sweep found quiet.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StalledGeneration {
    pub id: String,
    pub dispatch_task: Option<String>,
    pub updated_at: Millis,
}

impl Db {
    /// Unfinished generations that nobody has touched since `quiet_since`, whose lease
    /// (if any) has lapsed and whose retry (if any) was due before `quiet_since`: the
    /// queue may have lost their job. Pages by `(updated_at, id)` after `after`.
    pub async fn stalled_generations(
        &self,
        now: Millis,
        quiet_since: Millis,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<StalledGeneration>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MIN, ""));
        Ok(sqlx::query_as(
            "SELECT id, dispatch_task, updated_at FROM generations \
             WHERE status IN ('queued', 'starting', 'processing') AND parked_at IS NULL \
             AND updated_at < $2 AND (lease_until IS NULL OR lease_until < $1) \
             AND (not_before IS NULL OR not_before < $2) \
             AND (updated_at > $3 OR (updated_at = $3 AND id > $4)) \
             ORDER BY updated_at, id LIMIT $5",
        )
        .bind(now)
        .bind(quiet_since)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that the sweep dispatches a stalled generation again with
    /// `dispatch_task`, unless the generation changed since the sweep saw it (then its
    /// own worker or retry is in charge). Returns whether it recorded.
    pub async fn record_redispatch(
        &self,
        stalled: &StalledGeneration,
        now: Millis,
        dispatch_task: &str,
    ) -> DbResult<bool> {
        let updated =
            sqlx::query("UPDATE generations SET updated_at = $2, dispatch_task = $3 WHERE id = $1 AND updated_at = $4")
                .bind(&stalled.id)
                .bind(now)
                .bind(dispatch_task)
                .bind(stalled.updated_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(updated == 1)
    }
}
