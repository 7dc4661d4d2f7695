//! Named leases: single-flight for periodic work shared by several processes, and
//! due times for tasks that run once per interval across all of them.

use crate::time::Millis;

use super::{Db, DbResult};

impl Db {
    /// Takes the lease `name` for `holder` until `until`, if it is free, lapsed or
    /// already ours. Returns whether `holder` now holds it.
    pub async fn try_acquire_lease(&self, name: &str, holder: &str, now: Millis, until: Millis) -> DbResult<bool> {
        let taken = sqlx::query(
            "INSERT INTO scheduler_leases (name, holder, expires_at) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE scheduler_leases.expires_at < $3 OR scheduler_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// Gives the lease back early so another process may run the next tick at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM scheduler_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims the periodic task `name` if it is due at `now`, and makes it due next at
    /// `next_due`. One claim per due time across every process (single statement).
    pub async fn claim_due_task(&self, name: &str, now: Millis, next_due: Millis) -> DbResult<bool> {
        let claimed = sqlx::query(
            "INSERT INTO scheduler_leases (name, holder, expires_at) VALUES ($1, 'periodic', $3) \
             ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE scheduler_leases.expires_at <= $2",
        )
        .bind(name)
        .bind(now)
        .bind(next_due)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Makes the periodic task `name` due again at `at` (sooner, after a failed run).
    pub async fn reschedule_task(&self, name: &str, at: Millis) -> DbResult<()> {
        sqlx::query("UPDATE scheduler_leases SET expires_at = $2 WHERE name = $1")
            .bind(name)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
