//! Canceling a generation on its owner's request.

use crate::ids::UserId;
use crate::time::Millis;

use super::credits::give_credits_back;
use super::{Db, DbResult};

/// What a cancel request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The generation is now `canceled` and its credits are back.
    Canceled,
    /// It had already ended; nothing changed.
    AlreadyEnded,
    /// No generation of this user has this id.
    NotFound,
}

impl Db {
    /// Cancels an unfinished generation of `user`. Before it starts the hold is
    /// released; while it runs the charge is refunded in full, and the worker, whose
    /// lease this clears, stops at its next progress report or lease renewal.
    pub async fn cancel_generation(&self, id: &str, user: &UserId, now: Millis) -> DbResult<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let ended: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE generations SET status = 'canceled', progress_stage = 'canceled', completed_at = $3, \
             updated_at = $3, lease_owner = NULL, lease_until = NULL, version = version + 1 \
             WHERE id = $1 AND user_id = $2 AND status IN ('queued', 'starting', 'processing') \
             RETURNING cost, charged",
        )
        .bind(id)
        .bind(user.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((cost, charged)) = ended else {
            tx.rollback().await?;
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM generations WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(if exists.is_some() { CancelOutcome::AlreadyEnded } else { CancelOutcome::NotFound });
        };
        give_credits_back(&mut tx, id, user.as_str(), cost, charged, now).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Canceled)
    }
}
