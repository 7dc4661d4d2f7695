//! The daily reconciliation's queries: each account's cached balance against what its
//! ledger adds up to, the Checkout Sessions we have a payment for, and the run's report.

use std::collections::HashSet;

use crate::ids::ReconciliationId;
use crate::time::Millis;

use super::{Db, DbResult};

/// One account's cached credits beside what its ledger adds up to.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerCheck {
    pub user_id: String,
    pub balance: i64,
    pub held: i64,
    /// grant + purchase − charge + refund.
    pub ledger_balance: i64,
    /// hold − charge − release.
    pub ledger_held: i64,
}

impl LedgerCheck {
    pub fn agrees(&self) -> bool {
        self.balance == self.ledger_balance && self.held == self.ledger_held
    }
}

/// What one reconciliation found, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ReconciliationRow {
    pub ran_at: Millis,
    pub users_checked: i64,
    pub balance_differences: i64,
    pub sessions_checked: i64,
    pub sessions_applied: i64,
    /// Why Stripe's sessions could not be listed, when they could not.
    pub stripe_error: Option<String>,
}

impl Db {
    /// The accounts after `after_user` (by id), up to `limit`, each with its ledger sums.
    /// One statement, so the balance and the ledger are read from one snapshot.
    pub async fn ledger_checks(&self, after_user: &str, limit: i64) -> DbResult<Vec<LedgerCheck>> {
        // CAST: PostgreSQL's SUM of BIGINT is NUMERIC, which the Any driver cannot read.
        Ok(sqlx::query_as(
            "SELECT u.id AS user_id, u.credits_balance AS balance, u.credits_held AS held, \
             CAST(COALESCE(SUM(CASE WHEN l.kind IN ('grant', 'purchase', 'refund') THEN l.amount \
                                    WHEN l.kind = 'charge' THEN -l.amount ELSE 0 END), 0) AS BIGINT) AS ledger_balance, \
             CAST(COALESCE(SUM(CASE WHEN l.kind = 'hold' THEN l.amount \
                                    WHEN l.kind IN ('charge', 'release') THEN -l.amount ELSE 0 END), 0) AS BIGINT) AS ledger_held \
             FROM (SELECT id, credits_balance, credits_held FROM users WHERE id > $1 ORDER BY id LIMIT $2) u \
             LEFT JOIN credit_ledger l ON l.user_id = u.id \
             GROUP BY u.id, u.credits_balance, u.credits_held ORDER BY u.id",
        )
        .bind(after_user)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Which of `session_ids` have a payment record (were fulfilled).
    pub async fn fulfilled_checkout_sessions(&self, session_ids: &[String]) -> DbResult<HashSet<String>> {
        if session_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT checkout_session_id FROM payments WHERE checkout_session_id IN ({})",
            super::users::placeholders(1, session_ids.len())
        );
        // Safe: only numbered placeholders are formatted in.
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for id in session_ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().collect())
    }

    pub async fn insert_reconciliation(&self, report: &ReconciliationRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO reconciliation_runs (id, ran_at, users_checked, balance_differences, sessions_checked, \
             sessions_applied, stripe_error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ReconciliationId::generate().as_str())
        .bind(report.ran_at)
        .bind(report.users_checked)
        .bind(report.balance_differences)
        .bind(report.sessions_checked)
        .bind(report.sessions_applied)
        .bind(report.stripe_error.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest reconciliation's report.
    pub async fn latest_reconciliation(&self) -> DbResult<Option<ReconciliationRow>> {
        Ok(sqlx::query_as(
            "SELECT ran_at, users_checked, balance_differences, sessions_checked, sessions_applied, stripe_error \
             FROM reconciliation_runs ORDER BY ran_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}
