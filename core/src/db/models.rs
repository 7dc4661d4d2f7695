//! `model_availability`: what the workers' health checks of the Cog model servers
//! last saw, per kind and style, for the API to read.

use crate::domain::{GenerationKind, ModelAvailability};
use crate::time::Millis;

use super::{Db, DbResult};

impl Db {
    /// Records the workers' latest view, one upsert per style (a handful of rows).
    pub async fn record_model_availability(&self, report: &[ModelAvailability], now: Millis) -> DbResult<()> {
        for entry in report {
            sqlx::query(
                "INSERT INTO model_availability (kind, style, available, detail, checked_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (kind, style) DO UPDATE SET available = excluded.available, \
                 detail = excluded.detail, checked_at = excluded.checked_at",
            )
            .bind(entry.kind.as_str())
            .bind(&entry.style)
            .bind(i64::from(entry.available))
            .bind(&entry.detail)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The styles of `kind` reported available since `fresh_after`.
    pub async fn available_styles(&self, kind: GenerationKind, fresh_after: Millis) -> DbResult<Vec<String>> {
        let styles = sqlx::query_scalar(
            "SELECT style FROM model_availability WHERE kind = $1 AND available = 1 AND checked_at > $2 ORDER BY style",
        )
        .bind(kind.as_str())
        .bind(fresh_after)
        .fetch_all(&self.pool)
        .await?;
        Ok(styles)
    }
}
