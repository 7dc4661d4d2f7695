//! What the operator's commands read and write beyond the roles' own queries:
//! `petportrait users show` (an account found by id or by its e-mail's blind index, and
//! counts of what it holds) and `petportrait generation retry` (run it again now).

use crate::time::Millis;

use super::{Db, DbResult, UserRow};

/// Counts of what one account holds, for `users show`.
#[derive(Debug, Default, serde::Serialize)]
pub struct AccountSummary {
    /// Generations per status (`queued`, `succeeded`, ...).
    pub generations: std::collections::BTreeMap<String, i64>,
    pub sessions: i64,
    pub api_tokens: i64,
    pub gallery_items: i64,
    pub payments: i64,
    pub webhook_endpoints: i64,
    pub accepted_policy: Option<String>,
}

impl Db {
    /// The account whose e-mail index is one of `email_indexes` (one per key of the ring).
    pub async fn find_user_by_email(&self, email_indexes: &[String]) -> DbResult<Option<UserRow>> {
        self.find_user_by_index("email_index", email_indexes).await
    }

    pub async fn account_summary(&self, user: &str) -> DbResult<AccountSummary> {
        let mut summary = AccountSummary::default();
        let by_status: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM generations WHERE user_id = $1 GROUP BY status")
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
        summary.generations = by_status.into_iter().collect();
        let count = |table: &'static str| {
            // Safe: the table names are the constants below.
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table} WHERE user_id = $1"
            )))
            .bind(user)
            .fetch_one(&self.pool)
        };
        summary.sessions = count("sessions").await?;
        summary.api_tokens = count("api_tokens").await?;
        summary.gallery_items = count("gallery_items").await?;
        summary.payments = count("payments").await?;
        summary.webhook_endpoints = count("webhook_endpoints").await?;
        summary.accepted_policy = self.accepted_policy(&crate::ids::UserId::from_db(user.to_owned())).await?;
        Ok(summary)
    }

    /// Makes an unfinished generation runnable now: its retry's wait (if any) and its
    /// parking (if any) end, and `dispatch_task` is recorded as its dispatch. Not while a
    /// lease holds it. Returns whether it changed the row.
    pub async fn make_runnable_now(&self, id: &str, now: Millis, dispatch_task: &str) -> DbResult<bool> {
        let updated = sqlx::query(
            "UPDATE generations SET not_before = NULL, parked_at = NULL, dispatch_task = $3, updated_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'starting', 'processing') \
             AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(id)
        .bind(now)
        .bind(dispatch_task)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }
}
