//! The audit log's rows (`privacy/audit.rs` says what goes in them). The table is
//! append-only by its triggers: these are the only statements that touch it.

use crate::time::Millis;

use super::{Db, DbResult};

/// One entry as stored.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: String,
    /// The pseudonym of the person (never an id, name, address or token).
    pub subject: String,
    pub action: String,
    /// JSON: what the entry needs beside its action (a policy version, field names).
    pub detail: String,
    pub created_at: Millis,
    pub retain_until: Millis,
}

/// Appends `row` within the transaction of the change it records, so the change and its
/// entry commit together or not at all.
pub(super) async fn insert_audit(tx: &mut sqlx::AnyConnection, row: &AuditRow) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, subject, action, detail, created_at, retain_until) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.id)
    .bind(&row.subject)
    .bind(&row.action)
    .bind(&row.detail)
    .bind(row.created_at)
    .bind(row.retain_until)
    .execute(tx)
    .await?;
    Ok(())
}

impl Db {
    /// Appends an entry on its own, for an operation that changes nothing else (an
    /// export downloaded).
    pub async fn record_audit(&self, row: &AuditRow) -> DbResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, row).await
    }

    /// The entries about one person (any of the pseudonyms the key ring's keys give).
    pub async fn audit_entries(&self, subjects: &[String]) -> DbResult<Vec<AuditRow>> {
        let sql = format!(
            "SELECT id, subject, action, detail, created_at, retain_until FROM audit_log \
             WHERE subject IN ({}) ORDER BY created_at, id",
            super::users::placeholders(1, subjects.len())
        );
        // Safe: only numbered placeholders are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for subject in subjects {
            query = query.bind(subject);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// The retention: deletes at most `limit` entries whose period ended before `before`
    /// (the triggers refuse any other deletion).
    pub async fn delete_expired_audit(&self, before: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE retain_until < $1 ORDER BY retain_until LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
