//! The credit ledger: reading it, and the entries every credit movement appends (in
//! the caller's transaction, next to the balance it changes).

use crate::domain::LedgerKind;
use crate::ids::UserId;
use crate::time::Millis;

use super::{Db, DbResult, LedgerRow};

/// What an operator's adjustment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjustment {
    /// Applied; the balance and held credits after it.
    Applied {
        balance: i64,
        held: i64,
    },
    /// Refused: it would take the balance below the credits held (or below zero).
    Insufficient,
    NoSuchUser,
}

impl Db {
    /// An operator's grant (`amount` > 0) or revocation (`amount` < 0), written to the
    /// ledger as a `grant` entry with its reason, with the balance, in one transaction.
    /// A revocation never takes the balance below what running generations hold.
    pub async fn adjust_credits(&self, user: &UserId, amount: i64, reason: &str, now: Millis) -> DbResult<Adjustment> {
        let mut tx = self.pool.begin().await?;
        let after: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE users SET credits_balance = credits_balance + $2 \
             WHERE id = $1 AND credits_balance + $2 >= credits_held RETURNING credits_balance, credits_held",
        )
        .bind(user.as_str())
        .bind(amount)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((balance, held)) = after else {
            tx.rollback().await?;
            return Ok(if self.get_user(user).await?.is_some() {
                Adjustment::Insufficient
            } else {
                Adjustment::NoSuchUser
            });
        };
        sqlx::query(
            "INSERT INTO credit_ledger (id, user_id, kind, amount, generation_id, created_at, reason) \
             VALUES ($1, $2, 'grant', $3, NULL, $4, $5)",
        )
        .bind(crate::ids::LedgerEntryId::generate().as_str())
        .bind(user.as_str())
        .bind(amount)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Adjustment::Applied { balance, held })
    }

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
