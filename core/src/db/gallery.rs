//! The gallery: generated files a user saved, kept until they delete them.
//!
//! Saving is two steps around a server-side copy in the object store. The copy's
//! object row is written first with a provisional expiry (the invariant "a row before
//! the object"), then `keep_gallery_item` records the item and clears the expiry in one
//! transaction. A save interrupted between the two leaves only a provisional object,
//! which the purge deletes like any expired one.

use crate::ids::UserId;
use crate::time::Millis;

use super::{Db, DbResult, GalleryItemRow};

/// The columns of `gallery_items`, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, user_id, generation_id, source_output_id, object_id, kind, style, filename, content_type, bytes, created_at"
    };
}

/// What became of a request to keep an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepOutcome {
    Kept,
    /// The output was already in the gallery (a concurrent or repeated save).
    AlreadySaved,
    /// The copy was purged before the item could be recorded (the save stalled past
    /// the copy's provisional expiry); nothing was recorded.
    CopyPurged,
}

impl Db {
    /// Records a gallery item whose copy is in the store and makes the copy permanent.
    /// The copy then expires at `expires_at` (`None`: never, as gallery copies do).
    pub async fn keep_gallery_item(&self, item: &GalleryItemRow, expires_at: Option<Millis>) -> DbResult<KeepOutcome> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO gallery_items (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (user_id, source_output_id) DO NOTHING"
        ))
        .bind(&item.id)
        .bind(&item.user_id)
        .bind(&item.generation_id)
        .bind(&item.source_output_id)
        .bind(&item.object_id)
        .bind(item.kind.as_str())
        .bind(&item.style)
        .bind(&item.filename)
        .bind(&item.content_type)
        .bind(item.bytes)
        .bind(item.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(KeepOutcome::AlreadySaved);
        }
        // The copy must still be there: a save that stalled past the provisional expiry
        // may have lost it to the purge, and an item must never point at a purged copy.
        let kept = sqlx::query(
            "UPDATE stored_objects SET expires_at = $2 WHERE id = $1 AND kind = 'gallery' AND state = 'active'",
        )
        .bind(&item.object_id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if kept == 0 {
            tx.rollback().await?;
            return Ok(KeepOutcome::CopyPurged);
        }
        tx.commit().await?;
        Ok(KeepOutcome::Kept)
    }

    /// The user's item saved from this output, if any.
    pub async fn gallery_item_from_output(&self, user: &UserId, output: &str) -> DbResult<Option<GalleryItemRow>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM gallery_items WHERE user_id = $1 AND source_output_id = $2"
        ))
        .bind(user.as_str())
        .bind(output)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The user's gallery, newest first, resuming strictly after `(created_at, id)`.
    pub async fn list_gallery(
        &self,
        user: &UserId,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<GalleryItemRow>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM gallery_items \
             WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(user.as_str())
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes one of the user's items and makes its copy due for the purge at once
    /// (it can no longer be downloaded). `false` when the user has no such item.
    pub async fn delete_gallery_item(&self, user: &UserId, id: &str, now: Millis) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE stored_objects SET expires_at = $3 \
             WHERE id = (SELECT object_id FROM gallery_items WHERE id = $1 AND user_id = $2)",
        )
        .bind(id)
        .bind(user.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM gallery_items WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }
}
