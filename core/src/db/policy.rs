//! Privacy policy versions and each user's acceptances.

use crate::ids::UserId;
use crate::time::Millis;

use super::{AuditRow, Db, DbResult};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyVersionRow {
    pub version: String,
    pub effective_at: Millis,
    pub url: String,
    pub published_at: Millis,
}

impl Db {
    /// Publishes a version taking effect at `effective_at`. `false` when the version
    /// exists already (a published version is never changed).
    pub async fn publish_policy(&self, version: &str, effective_at: Millis, url: &str, now: Millis) -> DbResult<bool> {
        Ok(sqlx::query(
            "INSERT INTO policy_versions (version, effective_at, url, published_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(effective_at)
        .bind(url)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// The version in force at `now`: the newest whose date has come.
    pub async fn policy_in_force(&self, now: Millis) -> DbResult<Option<PolicyVersionRow>> {
        Ok(sqlx::query_as(
            "SELECT version, effective_at, url, published_at FROM policy_versions \
             WHERE effective_at <= $1 ORDER BY effective_at DESC, version DESC LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every published version, the newest date first (the operator's view).
    pub async fn list_policies(&self) -> DbResult<Vec<PolicyVersionRow>> {
        Ok(sqlx::query_as(
            "SELECT version, effective_at, url, published_at FROM policy_versions \
             ORDER BY effective_at DESC, version DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that the user accepted `version` (once; accepting again changes nothing).
    /// Records the acceptance and, when it is new, its audit entry, in one transaction.
    pub async fn accept_policy(&self, user: &UserId, version: &str, now: Millis, audit: &AuditRow) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO policy_acceptances (user_id, version, accepted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, version) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            super::audit::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest version (by its date) the user accepted.
    pub async fn accepted_policy(&self, user: &UserId) -> DbResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT a.version FROM policy_acceptances a JOIN policy_versions p ON p.version = a.version \
             WHERE a.user_id = $1 ORDER BY p.effective_at DESC, p.version DESC LIMIT 1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }
}
