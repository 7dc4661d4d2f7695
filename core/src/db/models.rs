//! `model_availability`: what each worker's health checks of the Cog model servers last
//! saw, per kind and style, for the API to read.

use crate::domain::{GenerationKind, ModelAvailability};
use crate::time::Millis;

use super::{Db, DbResult};

/// How long the report of a worker that stopped reporting is kept (it is ignored long
/// before: the API reads only fresh reports).
const KEPT_MS: Millis = 24 * 3600 * 1000;

impl Db {
    /// Records `reporter`'s latest view, one upsert per style (a handful of rows), and
    /// drops reports a day old (workers that are gone).
    pub async fn record_model_availability(
        &self,
        reporter: &str,
        report: &[ModelAvailability],
        now: Millis,
    ) -> DbResult<()> {
        for entry in report {
            sqlx::query(
                "INSERT INTO model_availability (kind, style, reporter, available, detail, checked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (kind, style, reporter) DO UPDATE SET available = excluded.available, \
                 detail = excluded.detail, checked_at = excluded.checked_at",
            )
            .bind(entry.kind.as_str())
            .bind(&entry.style)
            .bind(reporter)
            .bind(i64::from(entry.available))
            .bind(&entry.detail)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query("DELETE FROM model_availability WHERE checked_at < $1")
            .bind(now - KEPT_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every report about `kind` made since `fresh_after`, one per style and worker.
    pub async fn model_availability(
        &self,
        kind: GenerationKind,
        fresh_after: Millis,
    ) -> DbResult<Vec<ModelAvailability>> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT style, available, detail FROM model_availability \
             WHERE kind = $1 AND checked_at > $2 ORDER BY style, reporter",
        )
        .bind(kind.as_str())
        .bind(fresh_after)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(style, available, detail)| ModelAvailability { kind, style, available: available != 0, detail })
            .collect())
    }
}
