//! Generations: creation with its credit hold, reads, the history list and outputs.
//! The lease holder's writes are in `runs.rs`, the scheduler's sweep in `sweep.rs`.

use crate::domain::{GenerationKind, GenerationStatus, LedgerKind};
use crate::ids::{GenerationId, UserId};
use crate::time::Millis;

use super::credits::insert_ledger_entry;
use super::{Db, DbResult, GenerationRow, OutputRow};

pub(super) const GENERATION_COLUMNS: &str = "id, user_id, kind, style, options, upload_id, status, cost, charged, refunded, \
    attempts, progress_percent, progress_stage, error_code, error_message, error_retryable, version, \
    idempotency_key, request_fingerprint, created_at, started_at, completed_at, updated_at, model_prediction, request_id";

/// Builds a statement from constant parts only; no user input ever reaches it.
pub(super) fn sql(parts: &[&'static str]) -> sqlx::AssertSqlSafe<String> {
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
    /// Its own `webhook`: the endpoint row of the URL and the filter (JSON).
    pub webhook: Option<(&'a str, &'a str)>,
    /// The API request's id (`X-Request-Id`), for the logs of its work.
    pub request_id: Option<&'a str>,
}

/// Why a creation did not happen.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Box<GenerationRow>),
    InsufficientCredits,
    /// The user already used this idempotency key.
    DuplicateKey,
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
             WHERE id = $2 AND credits_balance - credits_held >= $1 AND deleted_at IS NULL",
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
             idempotency_key, request_fingerprint, dispatch_task, created_at, updated_at, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $11, $10, $10, $12)",
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
        .bind(new.request_id)
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
        if let Some((endpoint, events)) = new.webhook {
            sqlx::query("INSERT INTO generation_webhooks (generation_id, endpoint_id, events) VALUES ($1, $2, $3)")
                .bind(new.id.as_str())
                .bind(endpoint)
                .bind(events)
                .execute(&mut *tx)
                .await?;
        }
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

    /// Forgets the `Idempotency-Key` (and the body's fingerprint) of at most `limit`
    /// generations created before `before`: a key is honoured for a day, after which the
    /// same key is a new request and nothing links the two. The unique index on
    /// `(user_id, idempotency_key)` admits any number of NULLs in both dialects.
    pub async fn clear_idempotency_keys_before(&self, before: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "UPDATE generations SET idempotency_key = NULL, request_fingerprint = NULL WHERE id IN \
             (SELECT id FROM generations WHERE idempotency_key IS NOT NULL AND created_at < $1 \
              ORDER BY created_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
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

    pub async fn list_outputs(&self, generation: &str) -> DbResult<Vec<OutputRow>> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.generation_id, o.position, o.object_id, o.filename, o.content_type, o.bytes, \
             o.created_at, o.expires_at, s.state AS object_state \
             FROM generation_outputs o JOIN stored_objects s ON s.id = o.object_id \
             JOIN generations g ON g.id = o.generation_id \
             WHERE o.generation_id = $1 AND g.status = 'succeeded' ORDER BY o.position",
        )
        .bind(generation)
        .fetch_all(&self.pool)
        .await?)
    }
}
