//! Generations: creation with its credit hold, the worker's claim and lease, progress,
//! outputs and the terminal transitions.

use crate::domain::{GenerationKind, GenerationStatus, LedgerKind};
use crate::ids::{GenerationId, UserId};
use crate::time::Millis;

use super::{Db, DbResult, GenerationRow, OutputRow};

const GENERATION_COLUMNS: &str = "id, user_id, kind, style, options, upload_id, status, cost, charged, refunded, \
    attempts, progress_percent, progress_stage, error_code, error_message, error_retryable, version, \
    idempotency_key, request_fingerprint, created_at, started_at, completed_at, updated_at";

/// Builds a statement from constant parts only; no user input ever reaches it.
fn sql(parts: &[&'static str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

/// What the API asks for when it creates a generation.
#[derive(Clone, Debug)]
pub struct NewGeneration<'a> {
    pub id: &'a GenerationId,
    pub user_id: &'a UserId,
    pub kind: GenerationKind,
    pub style: &'a str,
    pub options: &'a str,
    pub upload_id: &'a str,
    pub cost: i64,
    pub idempotency_key: Option<&'a str>,
    pub request_fingerprint: Option<&'a str>,
    /// The queue task that will dispatch it.
    pub dispatch_task: &'a str,
}

/// Why a creation did not happen.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Box<GenerationRow>),
    InsufficientCredits,
    /// The user already used this idempotency key.
    DuplicateKey,
}

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

/// Filters of the history list; empty strings mean "any".
#[derive(Clone, Debug, Default)]
pub struct GenerationFilter<'a> {
    pub status: Option<GenerationStatus>,
    pub kind: Option<GenerationKind>,
    /// Resume strictly after this `(created_at, id)`.
    pub after: Option<(Millis, &'a str)>,
    pub limit: i64,
}

impl Db {
    /// Places the hold and writes the generation in one transaction.
    pub async fn create_generation(&self, new: &NewGeneration<'_>, now: Millis) -> DbResult<CreateOutcome> {
        let mut tx = self.pool.begin().await?;
        // The hold comes first: it is the transaction's first write, and it is conditional,
        // so two concurrent requests can never hold more than the balance.
        let held = sqlx::query(
            "UPDATE users SET credits_held = credits_held + $1 \
             WHERE id = $2 AND credits_balance - credits_held >= $1",
        )
        .bind(new.cost)
        .bind(new.user_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held == 0 {
            tx.rollback().await?;
            return Ok(CreateOutcome::InsufficientCredits);
        }
        let inserted = sqlx::query(
            "INSERT INTO generations (id, user_id, kind, style, options, upload_id, status, cost, \
             idempotency_key, request_fingerprint, dispatch_task, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $11, $10, $10)",
        )
        .bind(new.id.as_str())
        .bind(new.user_id.as_str())
        .bind(new.kind.as_str())
        .bind(new.style)
        .bind(new.options)
        .bind(new.upload_id)
        .bind(new.cost)
        .bind(new.idempotency_key)
        .bind(new.request_fingerprint)
        .bind(now)
        .bind(new.dispatch_task)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) => {
                let e = super::DbError::from(e);
                if e.is_unique_violation() {
                    tx.rollback().await?;
                    return Ok(CreateOutcome::DuplicateKey);
                }
                return Err(e);
            }
        }
        insert_ledger_entry(&mut tx, new.user_id.as_str(), LedgerKind::Hold, new.cost, Some(new.id.as_str()), now)
            .await?;
        tx.commit().await?;
        let row = self.get_generation(new.id).await?;
        row.map(|r| CreateOutcome::Created(Box::new(r)))
            .ok_or_else(|| super::DbError::Corrupt("generation vanished".into()))
    }

    pub async fn get_generation(&self, id: &GenerationId) -> DbResult<Option<GenerationRow>> {
        Ok(sqlx::query_as(sql(&["SELECT ", GENERATION_COLUMNS, " FROM generations WHERE id = $1"]))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A generation of this user; `None` for another user's or an unknown id.
    pub async fn get_generation_of_user(&self, id: &str, user: &UserId) -> DbResult<Option<GenerationRow>> {
        Ok(sqlx::query_as(sql(&["SELECT ", GENERATION_COLUMNS, " FROM generations WHERE id = $1 AND user_id = $2"]))
            .bind(id)
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn find_generation_by_idempotency_key(
        &self,
        user: &UserId,
        key: &str,
    ) -> DbResult<Option<GenerationRow>> {
        Ok(sqlx::query_as(sql(&[
            "SELECT ",
            GENERATION_COLUMNS,
            " FROM generations WHERE user_id = $1 AND idempotency_key = $2",
        ]))
        .bind(user.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The user's generations, newest first.
    pub async fn list_generations(&self, user: &UserId, filter: &GenerationFilter<'_>) -> DbResult<Vec<GenerationRow>> {
        let (after_at, after_id) = filter.after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(sql(&[
            "SELECT ",
            GENERATION_COLUMNS,
            " FROM generations WHERE user_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR kind = $3) \
              AND (created_at < $4 OR (created_at = $4 AND id < $5)) \
              ORDER BY created_at DESC, id DESC LIMIT $6",
        ]))
        .bind(user.as_str())
        .bind(filter.status.map_or("", |s| s.as_str()))
        .bind(filter.kind.map_or("", |k| k.as_str()))
        .bind(after_at)
        .bind(after_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// 1-based position among queued generations, oldest first.
    pub async fn queue_position(&self, created_at: Millis) -> DbResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM generations WHERE status = 'queued' AND created_at <= $1")
            .bind(created_at)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Takes the generation for `owner` (a token unique to this delivery) until
    /// `lease_until`, counting an attempt. A lapsed lease (its worker died) is taken
    /// over; a live one is left alone, even if the same process holds it.
    pub async fn claim_generation(
        &self,
        id: &GenerationId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> DbResult<ClaimOutcome> {
        let claimed: Option<GenerationRow> = sqlx::query_as(sql(&[
            "UPDATE generations SET status = 'starting', attempts = attempts + 1, lease_owner = $2, \
             lease_until = $4, started_at = COALESCE(started_at, $3), progress_stage = 'starting', \
             updated_at = $3, version = version + 1 \
             WHERE id = $1 AND status IN ('queued', 'starting', 'processing') \
             AND (lease_until IS NULL OR lease_until < $3) AND (not_before IS NULL OR not_before <= $3) RETURNING ",
            GENERATION_COLUMNS,
        ]))
        .bind(id.as_str())
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = claimed {
            return Ok(ClaimOutcome::Claimed(Box::new(row)));
        }
        let current: Option<(String, Option<Millis>, Option<Millis>)> =
            sqlx::query_as("SELECT status, lease_until, not_before FROM generations WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match current {
            None => ClaimOutcome::Missing,
            Some((status, _, _)) if GenerationStatus::parse(&status).is_none_or(GenerationStatus::is_terminal) => {
                ClaimOutcome::Terminal
            }
            Some((_, Some(until), _)) if until >= now => ClaimOutcome::Leased { until },
            Some((_, _, Some(due))) if due > now => ClaimOutcome::NotYet { due },
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

    /// Records an output whose object row already exists. Idempotent per position.
    pub async fn insert_output(&self, output: &OutputRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO generation_outputs (id, generation_id, position, object_id, filename, content_type, bytes, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (generation_id, position) DO NOTHING",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_outputs(&self, generation: &str) -> DbResult<Vec<OutputRow>> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.generation_id, o.position, o.object_id, o.filename, o.content_type, o.bytes, \
             o.created_at, o.expires_at, s.state AS object_state \
             FROM generation_outputs o JOIN stored_objects s ON s.id = o.object_id \
             WHERE o.generation_id = $1 ORDER BY o.position",
        )
        .bind(generation)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends the generation `succeeded`, if this worker still holds it.
    pub async fn mark_succeeded(&self, id: &GenerationId, owner: &str, now: Millis) -> DbResult<bool> {
        self.update_held(
            "UPDATE generations SET status = 'succeeded', progress_percent = 100, progress_stage = 'done', \
             completed_at = $3, updated_at = $3, lease_owner = NULL, lease_until = NULL, version = version + 1 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('starting', 'processing')",
            id,
            owner,
            now,
        )
        .await
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

    /// Runs a statement over `(id, owner, now)` that only applies while `owner` holds the
    /// lease; returns whether it applied.
    async fn update_held(&self, sql: &'static str, id: &GenerationId, owner: &str, now: Millis) -> DbResult<bool> {
        let updated =
            sqlx::query(sql).bind(id.as_str()).bind(owner).bind(now).execute(&self.pool).await?.rows_affected();
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
        // A worker fails only what it holds; without an owner (an operator, a sweep) any
        // unfinished generation may be failed.
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
             WHERE status IN ('queued', 'starting', 'processing') \
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

/// A generation the sweep found quiet.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StalledGeneration {
    pub id: String,
    pub dispatch_task: Option<String>,
    pub updated_at: Millis,
}

/// Gives an ended generation's credits back in the caller's transaction: the hold is
/// released if nothing was charged, the charge refunded otherwise; each at most once.
pub(super) async fn give_credits_back(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    user: &str,
    cost: i64,
    charged: i64,
    now: Millis,
) -> DbResult<()> {
    if charged > 0 {
        if insert_ledger_entry(tx, user, LedgerKind::Refund, charged, Some(id), now).await? {
            sqlx::query("UPDATE users SET credits_balance = credits_balance + $1 WHERE id = $2")
                .bind(charged)
                .bind(user)
                .execute(&mut **tx)
                .await?;
            sqlx::query("UPDATE generations SET refunded = $1 WHERE id = $2")
                .bind(charged)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    } else if insert_ledger_entry(tx, user, LedgerKind::Release, cost, Some(id), now).await? {
        sqlx::query("UPDATE users SET credits_held = credits_held - $1 WHERE id = $2")
            .bind(cost)
            .bind(user)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Appends a ledger entry unless this generation already has one of this kind.
/// Returns whether it was appended.
pub(super) async fn insert_ledger_entry(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    kind: LedgerKind,
    amount: i64,
    generation: Option<&str>,
    now: Millis,
) -> DbResult<bool> {
    Ok(sqlx::query(
        "INSERT INTO credit_ledger (id, user_id, kind, amount, generation_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (generation_id, kind) DO NOTHING",
    )
    .bind(crate::ids::LedgerEntryId::generate().as_str())
    .bind(user)
    .bind(kind.as_str())
    .bind(amount)
    .bind(generation)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}
