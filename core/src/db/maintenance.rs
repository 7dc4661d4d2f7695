//! Cursors of resumable maintenance walks (`maintenance_cursors`): where a walk that
//! spans many ticks stopped, so a restart or another scheduler goes on from there.

use crate::time::Millis;

use super::{Db, DbResult};

impl Db {
    /// Where the walk `name` stopped: `None` when it has not started or starts over.
    pub async fn maintenance_cursor(&self, name: &str) -> DbResult<Option<String>> {
        let cursor: Option<Option<String>> =
            sqlx::query_scalar("SELECT cursor FROM maintenance_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(cursor.flatten())
    }

    /// Records where the walk `name` stopped (`None`: start over next time).
    pub async fn set_maintenance_cursor(&self, name: &str, cursor: Option<&str>, now: Millis) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO maintenance_cursors (name, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(cursor)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Starts over every walk whose cursor is an object key under `prefix` (a user's
    /// `u/{user}/`): the account's deletion leaves no key of the account behind. The walk
    /// then begins again from the first key, which costs one pass and loses nothing.
    /// Returns how many cursors were reset.
    pub async fn reset_maintenance_cursors_under(&self, prefix: &str, now: Millis) -> DbResult<u64> {
        let cursors: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, cursor FROM maintenance_cursors").fetch_all(&self.pool).await?;
        let mut reset = 0;
        // The table holds one row per walk, so the prefix is matched here rather than
        // with LIKE, whose wildcards (`_` is in every id) would need escaping.
        for (name, cursor) in cursors {
            let Some(cursor) = cursor.filter(|c| c.starts_with(prefix)) else { continue };
            // Only if the walk has not moved on meanwhile.
            reset += sqlx::query(
                "UPDATE maintenance_cursors SET cursor = NULL, updated_at = $3 WHERE name = $1 AND cursor = $2",
            )
            .bind(&name)
            .bind(&cursor)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(reset)
    }
}
