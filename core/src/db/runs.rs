//! The worker's writes to a running generation: the claim (only once any other
//! delivery's lease has lapsed) and then, conditional on holding that lease, the
//! charge, progress, lease renewals, success with the outputs, a retry or a failure.
//! Each is one conditional statement or a transaction that starts with it.

use crate::domain::{GenerationStatus, LedgerKind};
use crate::ids::GenerationId;
use crate::time::Millis;

use super::credits::{give_credits_back, insert_ledger_entry};
use super::generations::{GENERATION_COLUMNS, sql};
use super::objects::set_object_expiry;
use super::{Db, DbResult, GenerationRow, OutputRow};

/// What a worker got when it tried to claim a generation.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The worker holds the lease; `attempts` counts this attempt.
    Claimed(Box<GenerationRow>),
    /// The generation already ended; nothing to do.
    Terminal,
    /// Another worker holds a live lease until the given time.
    Leased { until: Millis },
    /// A retry is scheduled for the given time; it is not due yet.
    NotYet { due: Millis },
    /// No such generation (it was deleted).
    Missing,
    /// Its user already runs `USER_MAX_RUNNING` generations: it waits for one of them.
    UserAtCap,
}

/// What a worker's charge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The hold became a charge now.
    Charged,
    /// An earlier attempt already charged it.
    AlreadyCharged,
    /// The caller does not hold the generation (its lease lapsed, or it ended).
    NotHeld,
}

impl Db {
    /// Takes the generation for `owner` (a token unique to this delivery) until
    /// `lease_until`, counting an attempt. A lapsed lease (its worker died) is taken
    /// over; a live one is left alone, even if the same process holds it.
    /// `max_running` is the user's cap on running generations (`USER_MAX_RUNNING`; `None`:
    /// no cap): the claim counts the user's other live leases in the same statement.
    pub async fn claim_generation(
        &self,
        id: &GenerationId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        max_running: Option<u32>,
    ) -> DbResult<ClaimOutcome> {
        let cap = max_running.map_or(i64::MAX, i64::from);
        let mut tx = self.pool.begin().await?;
        if self.dialect() == super::Dialect::Postgres {
            // Dialect: PostgreSQL runs concurrent claims side by side, so two could both
            // count the user's last free slot; one user's claims take turns on a lock
            // named after the user (held until this transaction ends). SQLite has one writer.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext(user_id))::text FROM generations WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        }
        let claimed: Option<GenerationRow> = sqlx::query_as(sql(&[
            "UPDATE generations SET status = 'starting', attempts = attempts + 1, lease_owner = $2, \
             lease_until = $4, started_at = COALESCE(started_at, $3), progress_stage = 'starting', \
             updated_at = $3, version = version + 1, parked_at = NULL \
             WHERE id = $1 AND status IN ('queued', 'starting', 'processing') \
             AND (lease_until IS NULL OR lease_until < $3) AND (not_before IS NULL OR not_before <= $3) \
             AND (SELECT COUNT(*) FROM generations other WHERE other.user_id = generations.user_id \
                  AND other.id <> $1 AND other.status IN ('starting', 'processing') AND other.lease_until >= $3) < $5 \
             RETURNING ",
            GENERATION_COLUMNS,
        ]))
        .bind(id.as_str())
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(cap)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(row) = claimed {
            return Ok(ClaimOutcome::Claimed(Box::new(row)));
        }
        let current: Option<(String, Option<Millis>, Option<Millis>, i64)> = sqlx::query_as(
            "SELECT status, lease_until, not_before, (SELECT COUNT(*) FROM generations other \
             WHERE other.user_id = generations.user_id AND other.id <> $1 \
             AND other.status IN ('starting', 'processing') AND other.lease_until >= $2) \
             FROM generations WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match current {
            None => ClaimOutcome::Missing,
            Some((status, ..)) if GenerationStatus::parse(&status).is_none_or(GenerationStatus::is_terminal) => {
                ClaimOutcome::Terminal
            }
            Some((_, Some(until), _, _)) if until >= now => ClaimOutcome::Leased { until },
            Some((_, _, Some(due), _)) if due > now => ClaimOutcome::NotYet { due },
            Some((.., running)) if running >= cap => ClaimOutcome::UserAtCap,
            // The row changed between the two statements; look again shortly.
            Some(_) => ClaimOutcome::Leased { until: now },
        })
    }

    /// Turns the hold into a charge, once per generation, and only for the lease holder.
    /// Marking the row first orders the charge against `mark_failed` (both take the
    /// generation's row lock first), so a generation is never both released and charged.
    pub async fn charge_generation(
        &self,
        id: &GenerationId,
        owner: &str,
        user: &str,
        cost: i64,
        now: Millis,
    ) -> DbResult<ChargeOutcome> {
        let mut tx = self.pool.begin().await?;
        let marked = sqlx::query(
            "UPDATE generations SET charged = $3, version = version + 1, updated_at = $4 \
             WHERE id = $1 AND lease_owner = $2 AND charged = 0 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(cost)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            tx.rollback().await?;
            let current: Option<(i64, Option<String>)> =
                sqlx::query_as("SELECT charged, lease_owner FROM generations WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(match current {
                Some((charged, Some(holder))) if charged > 0 && holder == owner => ChargeOutcome::AlreadyCharged,
                _ => ChargeOutcome::NotHeld,
            });
        }
        insert_ledger_entry(&mut tx, user, LedgerKind::Charge, cost, Some(id.as_str()), now).await?;
        sqlx::query(
            "UPDATE users SET credits_balance = credits_balance - $1, credits_held = credits_held - $1 WHERE id = $2",
        )
        .bind(cost)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ChargeOutcome::Charged)
    }

    /// Records progress and renews the lease. `false` means the worker no longer holds
    /// the generation (its lease was taken over, or it ended) and must stop.
    /// Records the remote prediction the lease holder follows, so that the next attempt
    /// can follow it again. Returns whether the lease was still held.
    pub async fn record_model_prediction(&self, id: &GenerationId, owner: &str, prediction: &str) -> DbResult<bool> {
        Ok(sqlx::query(
            "UPDATE generations SET model_prediction = $3              WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(prediction)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn record_progress(
        &self,
        id: &GenerationId,
        owner: &str,
        percent: i64,
        stage: &str,
        now: Millis,
        lease_until: Millis,
    ) -> DbResult<bool> {
        Ok(sqlx::query(
            "UPDATE generations SET status = 'processing', progress_percent = $3, progress_stage = $4, \
             lease_until = $6, updated_at = $5, version = version + 1 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(percent)
        .bind(stage)
        .bind(now)
        .bind(lease_until)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Extends the lease without changing what clients see.
    pub async fn renew_lease(
        &self,
        id: &GenerationId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> DbResult<bool> {
        Ok(sqlx::query(
            "UPDATE generations SET lease_until = $3, updated_at = $4 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Ends the generation `succeeded` with its outputs, if this worker still holds it:
    /// one transaction marks the row, records the output rows and gives their objects
    /// their lasting expiry (they were written with a provisional one). A generation
    /// that was canceled or taken over meanwhile gets no outputs at all, so nothing of
    /// a losing attempt is ever listed or kept. Returns whether it applied.
    pub async fn mark_succeeded(
        &self,
        id: &GenerationId,
        owner: &str,
        outputs: &[OutputRow],
        now: Millis,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let marked = sqlx::query(
            "UPDATE generations SET status = 'succeeded', progress_percent = 100, progress_stage = 'done', \
             completed_at = $3, updated_at = $3, lease_owner = NULL, lease_until = NULL, version = version + 1 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        // Builds before this one recorded outputs before success, so a generation may
        // still hold rows of an attempt that lost it: this attempt's replace them.
        sqlx::query("DELETE FROM generation_outputs WHERE generation_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        for output in outputs {
            sqlx::query(
                "INSERT INTO generation_outputs (id, generation_id, position, object_id, filename, content_type, \
                 bytes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&output.id)
            .bind(&output.generation_id)
            .bind(output.position)
            .bind(&output.object_id)
            .bind(&output.filename)
            .bind(&output.content_type)
            .bind(output.bytes)
            .bind(output.created_at)
            .bind(output.expires_at)
            .execute(&mut *tx)
            .await?;
            set_object_expiry(&mut tx, &output.object_id, output.expires_at).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Puts the generation back in the queue after a retryable failure; the retry is
    /// due at `not_before` and dispatched by queue task `dispatch_task`.
    pub async fn mark_waiting_for_retry(
        &self,
        id: &GenerationId,
        owner: &str,
        now: Millis,
        not_before: Millis,
        dispatch_task: &str,
    ) -> DbResult<bool> {
        let updated = sqlx::query(
            "UPDATE generations SET status = 'queued', progress_stage = 'waiting_to_retry', \
             lease_owner = NULL, lease_until = NULL, not_before = $4, dispatch_task = $5, \
             updated_at = $3, version = version + 1 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(now)
        .bind(not_before)
        .bind(dispatch_task)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Ends the generation `failed` and gives the credits back: the hold is released if
    /// nothing was charged, the charge refunded otherwise. Returns `false` when the
    /// generation had already ended (nothing changes then).
    pub async fn mark_failed(
        &self,
        id: &GenerationId,
        owner: Option<&str>,
        code: &str,
        message: &str,
        retryable: bool,
        now: Millis,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        // A worker fails only what it holds; without an owner (a row the worker cannot
        // read) any unfinished generation may be failed.
        let sql = match owner {
            Some(_) => {
                "UPDATE generations SET status = 'failed', error_code = $2, error_message = $3, error_retryable = $4, \
                 completed_at = $5, updated_at = $5, lease_owner = NULL, lease_until = NULL, version = version + 1 \
                 WHERE id = $1 AND lease_owner = $6 AND status IN ('starting', 'processing') \
                 RETURNING user_id, cost, charged"
            }
            None => {
                "UPDATE generations SET status = 'failed', error_code = $2, error_message = $3, error_retryable = $4, \
                 completed_at = $5, updated_at = $5, lease_owner = NULL, lease_until = NULL, version = version + 1 \
                 WHERE id = $1 AND status IN ('queued', 'starting', 'processing') AND $6 = '' \
                 RETURNING user_id, cost, charged"
            }
        };
        let ended: Option<(String, i64, i64)> = sqlx::query_as(sql)
            .bind(id.as_str())
            .bind(code)
            .bind(message)
            .bind(i64::from(retryable))
            .bind(now)
            .bind(owner.unwrap_or(""))
            .fetch_optional(&mut *tx)
            .await?;
        let Some((user, cost, charged)) = ended else {
            tx.rollback().await?;
            return Ok(false);
        };
        give_credits_back(&mut tx, id.as_str(), &user, cost, charged, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
