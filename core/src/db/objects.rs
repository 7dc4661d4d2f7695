//! Stored objects (the object store's index) and uploads.

use std::collections::HashSet;

use crate::domain::StoredObjectKind;
use crate::ids::{ObjectId, UserId};
use crate::time::Millis;

use super::{Db, DbResult, Dialect, StoredObjectRow, UploadRow};

/// The facts about an object that is about to be written.
#[derive(Clone, Debug)]
pub struct NewObject<'a> {
    pub user_id: &'a UserId,
    pub kind: StoredObjectKind,
    pub object_key: &'a str,
    pub content_type: &'a str,
    pub bytes: i64,
    pub expires_at: Option<Millis>,
}

/// An object claimed for deletion by the purge.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DueObject {
    pub id: String,
    pub object_key: String,
}

impl Db {
    /// Records an object before its bytes are written, so the purge can always find it.
    /// Writing the same key again (a job that runs twice) returns the existing row's id.
    pub async fn insert_stored_object(&self, object: &NewObject<'_>, now: Millis) -> DbResult<ObjectId> {
        sqlx::query(
            "INSERT INTO stored_objects (id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8) ON CONFLICT (object_key) DO NOTHING",
        )
        .bind(ObjectId::generate().as_str())
        .bind(object.user_id.as_str())
        .bind(object.kind.as_str())
        .bind(object.object_key)
        .bind(object.content_type)
        .bind(object.bytes)
        .bind(now)
        .bind(object.expires_at)
        .execute(&self.pool)
        .await?;
        let id: String = sqlx::query_scalar("SELECT id FROM stored_objects WHERE object_key = $1")
            .bind(object.object_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(ObjectId::from_db(id))
    }

    /// Records the length of an object written from a stream, known only once its
    /// bytes are stored.
    pub async fn set_object_bytes(&self, id: &ObjectId, bytes: i64) -> DbResult<()> {
        sqlx::query("UPDATE stored_objects SET bytes = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(bytes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An object of this user, whatever its state; `None` for another user's.
    pub async fn get_object_of_user(&self, id: &str, user: &UserId) -> DbResult<Option<StoredObjectRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at \
             FROM stored_objects WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The name an output or gallery copy is downloaded under.
    pub async fn download_filename(&self, object_id: &str) -> DbResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT filename FROM generation_outputs WHERE object_id = $1 \
             UNION ALL SELECT filename FROM gallery_items WHERE object_id = $1 LIMIT 1",
        )
        .bind(object_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_object(&self, id: &ObjectId) -> DbResult<Option<StoredObjectRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at \
             FROM stored_objects WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Claims up to `limit` expired objects for deletion (state `deleting`). Rows left in
    /// `deleting` by an interrupted purge are claimed again, so the purge resumes.
    pub async fn claim_due_objects(&self, now: Millis, limit: i64) -> DbResult<Vec<DueObject>> {
        // Dialect-marked query: PostgreSQL skips rows another purge has locked; SQLite has
        // one writer at a time, so the plain form is already exclusive there.
        let sql = match self.dialect {
            Dialect::Postgres => {
                "UPDATE stored_objects SET state = 'deleting' WHERE id IN \
                 (SELECT id FROM stored_objects WHERE state IN ('active', 'deleting') AND expires_at <= $1 \
                  ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, object_key"
            }
            Dialect::Sqlite => {
                "UPDATE stored_objects SET state = 'deleting' WHERE id IN \
                 (SELECT id FROM stored_objects WHERE state IN ('active', 'deleting') AND expires_at <= $1 \
                  ORDER BY expires_at LIMIT $2) \
                 RETURNING id, object_key"
            }
        };
        Ok(sqlx::query_as(sql).bind(now).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Marks objects whose bytes are gone; the rows stay so downloads answer 410.
    pub async fn mark_objects_deleted(&self, ids: &[String], now: Millis) -> DbResult<u64> {
        let mut done = 0;
        let mut tx = self.pool.begin().await?;
        for id in ids {
            done += sqlx::query("UPDATE stored_objects SET state = 'deleted', deleted_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Makes objects due for the purge now and stops them being served: the objects of
    /// an attempt that lost its generation (canceled, or taken over by another worker).
    pub async fn expire_objects(&self, ids: &[ObjectId], now: Millis) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            set_object_expiry(&mut tx, id.as_str(), now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Of `keys`, those a row still owns (a row with that key, not `deleted`): the
    /// object walk deletes the others as orphans once they are old enough.
    pub async fn owned_object_keys(&self, keys: &[String]) -> DbResult<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT object_key FROM stored_objects WHERE state <> 'deleted' AND object_key IN ({})",
            super::users::placeholders(1, keys.len())
        );
        // Safe: only numbered placeholders are formatted in.
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(key);
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().collect())
    }

    /// Marks `deleted` (downloads then answer 410, as for a purged object) the active
    /// rows created before `created_before` whose key lies in the range the object walk
    /// just listed, `after` (exclusive) to `through` (inclusive; `None` for either end:
    /// open), yet is not among the `listed` keys: their bytes are gone. Returns how many.
    pub async fn mark_missing_objects(
        &self,
        after: Option<&str>,
        through: Option<&str>,
        listed: &[String],
        created_before: Millis,
        now: Millis,
    ) -> DbResult<u64> {
        // Dialect-marked query: the store lists keys in byte order; SQLite compares text
        // that way already, PostgreSQL only under the "C" collation (whatever the
        // database's own), which `stored_objects_key_bytes_idx` serves.
        let key = match self.dialect {
            Dialect::Postgres => "object_key COLLATE \"C\"",
            Dialect::Sqlite => "object_key",
        };
        let mut sql = String::from(
            "UPDATE stored_objects SET state = 'deleted', deleted_at = $1 WHERE state = 'active' AND created_at < $2",
        );
        let mut next = 3;
        if after.is_some() {
            sql.push_str(&format!(" AND {key} > ${next}"));
            next += 1;
        }
        if through.is_some() {
            sql.push_str(&format!(" AND {key} <= ${next}"));
            next += 1;
        }
        if !listed.is_empty() {
            sql.push_str(&format!(" AND object_key NOT IN ({})", super::users::placeholders(next, listed.len())));
        }
        // Safe: only the collation and numbered placeholders are formatted in.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(created_before);
        for bound in after.iter().chain(through.iter()) {
            query = query.bind(*bound);
        }
        for listed in listed {
            query = query.bind(listed);
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// Whether any active object created before `created_before` is recorded (the walk
    /// refuses to believe an empty bucket while there is).
    pub async fn any_active_object_before(&self, created_before: Millis) -> DbResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM stored_objects WHERE state = 'active' AND created_at < $1 LIMIT 1")
                .bind(created_before)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    pub async fn insert_upload(&self, upload: &UploadRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO uploads \
             (id, user_id, object_id, content_type, width, height, orientation, bytes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&upload.id)
        .bind(&upload.user_id)
        .bind(&upload.object_id)
        .bind(&upload.content_type)
        .bind(upload.width)
        .bind(upload.height)
        .bind(upload.orientation)
        .bind(upload.bytes)
        .bind(upload.created_at)
        .bind(upload.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An upload of this user; `None` for another user's or an unknown id.
    pub async fn get_upload_of_user(&self, id: &str, user: &UserId) -> DbResult<Option<UploadRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, object_id, content_type, width, height, orientation, bytes, created_at, expires_at \
             FROM uploads WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_upload(&self, id: &str) -> DbResult<Option<UploadRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, object_id, content_type, width, height, orientation, bytes, created_at, expires_at \
             FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Gives an active object a new expiry, in the caller's transaction (a deleting or
/// deleted object keeps its fate).
pub(super) async fn set_object_expiry(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    object_id: &str,
    expires_at: Millis,
) -> DbResult<()> {
    sqlx::query("UPDATE stored_objects SET expires_at = $2 WHERE id = $1 AND state = 'active'")
        .bind(object_id)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
