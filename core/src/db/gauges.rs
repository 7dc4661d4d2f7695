//! What `/metrics` reads from the system of record at each scrape: how long the oldest
//! waiting generation and webhook delivery have waited, the webhook backlog, and the
//! credits in the ledger. Each is one aggregate query.

use crate::time::Millis;

use super::{Db, DbResult};

/// The queues as the database sees them at `now`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Since when the oldest generation ready to run (queued, no retry pending) has waited.
    pub generation_waiting_since: Option<Millis>,
    /// Deliveries due now and not being attempted, and since when the oldest of them
    /// has been due.
    pub deliveries_due: i64,
    pub delivery_due_since: Option<Millis>,
    /// Deliveries waiting for a later attempt.
    pub deliveries_delayed: i64,
}

impl Db {
    pub async fn backlog(&self, now: Millis) -> DbResult<Backlog> {
        let generation_waiting_since: Option<Millis> = sqlx::query_scalar(
            "SELECT MIN(COALESCE(not_before, created_at)) FROM generations \
             WHERE status = 'queued' AND COALESCE(not_before, 0) <= $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let (deliveries_due, delivery_due_since, deliveries_delayed): (i64, Option<Millis>, i64) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN next_attempt_at <= $1 THEN 1 END), \
             MIN(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END), \
             COUNT(CASE WHEN next_attempt_at > $1 THEN 1 END) \
             FROM webhook_deliveries WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog { generation_waiting_since, deliveries_due, delivery_due_since, deliveries_delayed })
    }

    /// The ledger's total per entry kind (`grant`, `purchase`, `hold`, `charge`,
    /// `release`, `refund`): a scan of the whole ledger, so `/metrics` reads it at most
    /// once a minute.
    pub async fn ledger_totals(&self) -> DbResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT kind, CAST(SUM(amount) AS BIGINT) FROM credit_ledger GROUP BY kind ORDER BY kind")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The credits held now by queued and running generations.
    pub async fn credits_held(&self) -> DbResult<i64> {
        // `users_credits_held_idx` holds only the accounts holding credits.
        let held: Option<i64> =
            sqlx::query_scalar("SELECT CAST(SUM(credits_held) AS BIGINT) FROM users WHERE credits_held > 0")
                .fetch_one(&self.pool)
                .await?;
        Ok(held.unwrap_or(0))
    }
}
