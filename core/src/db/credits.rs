//! Reading the credit ledger.

use crate::ids::UserId;
use crate::time::Millis;

use super::{Db, DbResult, LedgerRow};

impl Db {
    /// The user's ledger, newest first, resuming strictly after `(created_at, id)`.
    pub async fn list_ledger(
        &self,
        user: &UserId,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<LedgerRow>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(
            "SELECT id, user_id, kind, amount, generation_id, created_at FROM credit_ledger \
             WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(user.as_str())
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ledger entries of one generation, oldest first.
    pub async fn ledger_of_generation(&self, generation: &str) -> DbResult<Vec<LedgerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, kind, amount, generation_id, created_at FROM credit_ledger \
             WHERE generation_id = $1 ORDER BY created_at, id",
        )
        .bind(generation)
        .fetch_all(&self.pool)
        .await?)
    }
}
