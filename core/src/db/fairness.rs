//! The per-user cap on running generations (`USER_MAX_RUNNING`): a generation whose
//! user is at the cap is parked (taken out of the queue, `parked_at` set) instead of
//! being pushed back, which would have every free worker pull and push back the same
//! user's backlog over and over. Whoever frees one of the user's slots (the worker
//! ending a run, the worker that parked one, the scheduler's sweep) dispatches the
//! user's oldest parked generation again.

use crate::ids::GenerationId;
use crate::time::Millis;

use super::{Db, DbResult};

/// The user's running generations: `starting` or `processing` under a live lease.
const RUNNING: &str = "(SELECT COUNT(*) FROM generations running WHERE running.user_id = $1 \
                       AND running.status IN ('starting', 'processing') AND running.lease_until >= $2)";

impl Db {
    /// Parks the generation (unless a lease holds it, it ended, or it is parked already);
    /// returns its user's id when it did.
    pub async fn park_generation(&self, id: &GenerationId, now: Millis) -> DbResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE generations SET parked_at = $2, updated_at = $2 \
             WHERE id = $1 AND parked_at IS NULL AND status IN ('queued', 'starting', 'processing') \
             AND (lease_until IS NULL OR lease_until < $2) RETURNING user_id",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The user's oldest parked generation, if the user has a free slot.
    pub async fn next_parked(&self, user: &str, now: Millis, max_running: u32) -> DbResult<Option<String>> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM generations WHERE user_id = $1 AND parked_at IS NOT NULL \
             AND status IN ('queued', 'starting', 'processing') AND {RUNNING} < $3 \
             ORDER BY created_at, id LIMIT 1"
        )))
        .bind(user)
        .bind(now)
        .bind(i64::from(max_running))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Takes `id` out of the parked ones and records `dispatch_task` as its dispatch,
    /// unless someone else took it first. Returns whether this caller should push it.
    pub async fn unpark(&self, id: &str, now: Millis, dispatch_task: &str) -> DbResult<bool> {
        let updated = sqlx::query(
            "UPDATE generations SET parked_at = NULL, updated_at = $2, dispatch_task = $3 \
             WHERE id = $1 AND parked_at IS NOT NULL",
        )
        .bind(id)
        .bind(now)
        .bind(dispatch_task)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Users with parked generations and a free slot, for the sweep (at most `limit`).
    pub async fn users_with_parked_and_room(&self, now: Millis, max_running: u32, limit: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT parked.user_id FROM generations parked WHERE parked.parked_at IS NOT NULL \
             AND parked.status IN ('queued', 'starting', 'processing') \
             AND (SELECT COUNT(*) FROM generations running WHERE running.user_id = parked.user_id \
                  AND running.status IN ('starting', 'processing') AND running.lease_until >= $1) < $2 \
             LIMIT $3",
        )
        .bind(now)
        .bind(i64::from(max_running))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
