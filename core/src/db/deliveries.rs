//! Webhook deliveries: a job claims one attempt (at most a few in flight per endpoint,
//! so a slow endpoint holds few workers), records how it went, and the owner reads the
//! log or asks for a redelivery.

use crate::time::Millis;

use super::generations::sql;
use super::{Db, DbResult};

/// A delivery with everything one attempt needs. `secret` is the endpoint's own
/// (sealed); `None` means the account's secrets sign.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub user_id: String,
    pub url: String,
    pub secret: Option<String>,
    pub event_type: String,
    pub body: String,
    /// This attempt's number, from 1.
    pub attempts: i64,
    /// A redelivery the owner asked for: one attempt, no schedule.
    pub manual: i64,
    /// The API request that created the event's generation (for the logs).
    pub request_id: Option<String>,
}

/// What a delivery job found.
#[derive(Debug)]
pub enum DeliveryClaim {
    /// No such delivery (purged, its endpoint deleted) or it has finished.
    Finished,
    /// Its next attempt is not due yet (another job will make it).
    NotDue,
    /// Another job is making an attempt.
    Leased,
    /// The endpoint has as many attempts in flight as it may.
    EndpointBusy,
    /// The endpoint is disabled: the delivery is now failed.
    EndpointDisabled,
    Claimed(Box<ClaimedDelivery>),
}

#[derive(sqlx::FromRow)]
struct DeliveryState {
    status: String,
    next_attempt_at: Option<Millis>,
    lease_until: Option<Millis>,
    enabled: i64,
}

/// What one attempt saw.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub started_at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What follows an attempt.
#[derive(Clone, Debug)]
pub enum Verdict {
    Delivered,
    /// Try again at this time.
    RetryAt(Millis),
    /// No more attempts.
    Failed,
    /// The endpoint answered 410: it is disabled with this reason.
    EndpointGone(String),
}

/// A delivery as its owner sees it in the log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub generation_id: Option<String>,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Millis>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub completed_at: Option<Millis>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What a redelivery request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedeliverOutcome {
    Scheduled,
    NotFound,
    /// An attempt is being made right now.
    InProgress,
    EndpointDisabled,
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, generation_id, event_type, status, attempts, next_attempt_at, \
                                last_status_code, last_error, created_at, completed_at";

impl Db {
    /// Claims the next attempt of delivery `id` until `lease_until`, unless its
    /// endpoint already has `endpoint_cap` attempts in flight.
    pub async fn claim_delivery(
        &self,
        id: &str,
        now: Millis,
        lease_until: Millis,
        endpoint_cap: i64,
    ) -> DbResult<DeliveryClaim> {
        // A read first: under a burst most jobs find their endpoint full, and they
        // should not queue for the write lock to learn it.
        if endpoint_full(&self.pool, id, now, endpoint_cap).await? {
            return Ok(DeliveryClaim::EndpointBusy);
        }
        let mut tx = self.pool.begin().await?;
        // The first write takes the endpoint's row (PostgreSQL) or the database (SQLite),
        // so two jobs never both see a free slot of one endpoint.
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = enabled \
             WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let state: Option<DeliveryState> = sqlx::query_as(
            "SELECT d.status, d.next_attempt_at, d.lease_until, e.enabled \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match state {
            None => DeliveryClaim::Finished,
            Some(s) if s.status != "pending" => DeliveryClaim::Finished,
            Some(s) if s.lease_until.is_some_and(|until| until > now) => DeliveryClaim::Leased,
            Some(s) if s.next_attempt_at.is_some_and(|at| at > now) => DeliveryClaim::NotDue,
            Some(s) if s.enabled == 0 => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'failed', completed_at = $2, \
                     last_error = 'the endpoint is disabled' WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                DeliveryClaim::EndpointDisabled
            }
            Some(_) => {
                if endpoint_full(&mut *tx, id, now, endpoint_cap).await? {
                    DeliveryClaim::EndpointBusy
                } else {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET lease_until = $2, attempts = attempts + 1 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(lease_until)
                    .execute(&mut *tx)
                    .await?;
                    let claimed: ClaimedDelivery = sqlx::query_as(
                        "SELECT d.id, d.endpoint_id, e.user_id, e.url, e.secret, d.event_type, d.body, d.attempts, \
                         d.manual, g.request_id FROM webhook_deliveries d \
                         JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                         LEFT JOIN generations g ON g.id = d.generation_id WHERE d.id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    DeliveryClaim::Claimed(Box::new(claimed))
                }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Records attempt `attempt` of `delivery` and what follows it, and the endpoint's
    /// health: a success clears its failures; a failure starts (or continues) them, and
    /// an endpoint failing since before `disable_before` is disabled with `reason`.
    /// `false` when the attempt's lease was lost (another attempt was made meanwhile).
    pub async fn finish_attempt(
        &self,
        delivery: &ClaimedDelivery,
        record: &AttemptRecord,
        verdict: &Verdict,
        now: Millis,
        disable_before: Millis,
        disable_reason: &str,
    ) -> DbResult<bool> {
        let (status, next_at, completed_at) = match verdict {
            Verdict::Delivered => ("succeeded", None, Some(now)),
            Verdict::RetryAt(at) => ("pending", Some(*at), None),
            Verdict::Failed | Verdict::EndpointGone(_) => ("failed", None, Some(now)),
        };
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, completed_at = $5, lease_until = NULL, \
             manual = 0, last_status_code = $6, last_error = $7 \
             WHERE id = $1 AND attempts = $2 AND lease_until IS NOT NULL",
        )
        .bind(&delivery.id)
        .bind(delivery.attempts)
        .bind(status)
        .bind(next_at)
        .bind(completed_at)
        .bind(record.status_code)
        .bind(&record.error)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, \
             response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&delivery.id)
        .bind(delivery.attempts)
        .bind(record.started_at)
        .bind(record.duration_ms)
        .bind(record.status_code)
        .bind(&record.error)
        .bind(&record.response_excerpt)
        .execute(&mut *tx)
        .await?;
        let endpoint = delivery.endpoint_id.as_str();
        match verdict {
            Verdict::Delivered => {
                sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = $2 WHERE id = $1")
                    .bind(endpoint)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            Verdict::EndpointGone(reason) => {
                disable(&mut tx, endpoint, reason, now).await?;
            }
            Verdict::RetryAt(_) | Verdict::Failed => {
                sqlx::query("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1")
                    .bind(endpoint)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $2, disabled_at = $3 \
                     WHERE id = $1 AND enabled = 1 AND failing_since <= $4",
                )
                .bind(endpoint)
                .bind(disable_reason)
                .bind(now)
                .bind(disable_before)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The deliveries of an endpoint, newest first, after the cursor `(created_at, id)`.
    pub async fn list_deliveries(
        &self,
        endpoint: &str,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<DeliveryRow>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(sql(&[
            "SELECT ",
            DELIVERY_COLUMNS,
            " FROM webhook_deliveries WHERE endpoint_id = $1 \
              AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
        ]))
        .bind(endpoint)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The attempts of a delivery, in order.
    pub async fn list_attempts(&self, delivery: &str) -> DbResult<Vec<AttemptRow>> {
        Ok(sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt FROM webhook_attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes a delivery of `user`'s due now. A finished one gets a single attempt more
    /// (with the same `webhook-id` and body); a pending one is brought forward.
    pub async fn redeliver(&self, id: &str, user: &str, now: Millis) -> DbResult<RedeliverOutcome> {
        let scheduled = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, completed_at = NULL, \
             manual = CASE WHEN status = 'pending' THEN manual ELSE 1 END \
             WHERE id = $1 AND (lease_until IS NULL OR lease_until <= $3) \
             AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE user_id = $2 AND enabled = 1)",
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if scheduled == 1 {
            return Ok(RedeliverOutcome::Scheduled);
        }
        let found: Option<(Option<Millis>, i64)> = sqlx::query_as(
            "SELECT d.lease_until, e.enabled FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.id = $1 AND e.user_id = $2",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match found {
            None => RedeliverOutcome::NotFound,
            Some((_, 0)) => RedeliverOutcome::EndpointDisabled,
            Some(_) => RedeliverOutcome::InProgress,
        })
    }

    /// Up to `limit` deliveries of `endpoint` that are due and held by no attempt, oldest
    /// first: the ones an attempt that just freed a slot hands it to.
    pub async fn waiting_deliveries(&self, endpoint: &str, now: Millis, limit: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' \
             AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
             ORDER BY next_attempt_at, id LIMIT $3",
        )
        .bind(endpoint)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pending deliveries due before `due_before` that no attempt holds: their job was
    /// lost (a failed push, a crash between commit and push). The scheduler pushes them again.
    pub async fn stranded_deliveries(&self, due_before: Millis, now: Millis, limit: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at < $1 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at LIMIT $3",
        )
        .bind(due_before)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes up to `limit` finished deliveries made before `before`, with their attempts.
    pub async fn purge_deliveries(&self, before: Millis, limit: i64) -> DbResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries \
             WHERE created_at < $1 AND status <> 'pending' ORDER BY created_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE created_at < $1 AND status <> 'pending' ORDER BY created_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Whether the endpoint of delivery `id` has `cap` attempts in flight.
async fn endpoint_full<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    id: &str,
    now: Millis,
    cap: i64,
) -> DbResult<bool> {
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries \
         WHERE endpoint_id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1) \
         AND status = 'pending' AND lease_until > $2",
    )
    .bind(id)
    .bind(now)
    .fetch_one(executor)
    .await?;
    Ok(in_flight >= cap)
}

async fn disable(tx: &mut sqlx::Transaction<'_, sqlx::Any>, endpoint: &str, reason: &str, now: Millis) -> DbResult<()> {
    sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $2, disabled_at = $3 WHERE id = $1")
        .bind(endpoint)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
