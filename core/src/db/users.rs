//! Users. Personal fields arrive here sealed (`crate::accounts`
//! seals and opens them); accounts are found by blind indexes.

use crate::domain::LedgerKind;
use crate::ids::UserId;
use crate::time::Millis;

use super::credits::insert_ledger_entry;
use super::{Db, DbResult, UserRow};

pub(super) const USER_COLUMNS: &str = "u.id, u.email, u.name, u.picture_url, u.picture_object_id, u.preferences, \
     u.credits_balance, u.credits_held, u.created_at";

/// A new account's sealed fields and indexes, all computed for its id.
pub struct NewUser<'a> {
    pub id: &'a UserId,
    pub sealed_email: &'a str,
    pub sealed_name: &'a str,
    pub sealed_picture: Option<&'a str>,
    pub sealed_subject: &'a str,
    pub subject_index: &'a str,
    pub email_index: &'a str,
}

/// What the re-encryption reads and rewrites of one account.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SealedUserFields {
    pub id: String,
    pub email: String,
    pub name: String,
    pub picture_url: Option<String>,
    pub subject: Option<String>,
}

/// `$from, $from+1, …` for an `IN` list of `count` values.
pub(super) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

impl Db {
    /// The account whose subject index is one of `subject_indexes` (one per key of the ring).
    pub async fn find_user_by_subject(&self, subject_indexes: &[String]) -> DbResult<Option<UserRow>> {
        self.find_user_by_index("subject_index", subject_indexes).await
    }

    /// The account whose blind index `column` is one of `indexes`.
    pub(super) async fn find_user_by_index(
        &self,
        column: &'static str,
        indexes: &[String],
    ) -> DbResult<Option<UserRow>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users u WHERE u.{column} IN ({})", placeholders(1, indexes.len()));
        // Safe: only our column names and numbered placeholders are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for index in indexes {
            query = query.bind(index);
        }
        Ok(query.fetch_optional(&self.pool).await?)
    }

    /// Creates the account with `starter_credits`, granted through the ledger in the same
    /// transaction. `false` when an account with the same subject index exists already
    /// (another request created it first); nothing is written then.
    pub async fn insert_user(&self, user: &NewUser<'_>, starter_credits: i64, now: Millis) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, picture_url, subject, subject_index, email_index, \
             credits_balance, credits_held, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
             ON CONFLICT (subject_index) DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(user.sealed_email)
        .bind(user.sealed_name)
        .bind(user.sealed_picture)
        .bind(user.sealed_subject)
        .bind(user.subject_index)
        .bind(user.email_index)
        .bind(starter_credits)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if starter_credits > 0 {
            insert_ledger_entry(&mut tx, user.id.as_str(), LedgerKind::Grant, starter_credits, None, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get_user(&self, id: &UserId) -> DbResult<Option<UserRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1")))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The user's correction: a new sealed name (remembered as edited, so a sign-in does
    /// not overwrite it) and/or new preferences (JSON). `false` when the user is gone.
    pub async fn update_user_profile(
        &self,
        id: &UserId,
        sealed_name: Option<&str>,
        preferences: Option<&str>,
        now: Millis,
        audit: &super::AuditRow,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET name = COALESCE($2, name), preferences = COALESCE($3, preferences),              name_edited_at = CASE WHEN $2 IS NULL THEN name_edited_at ELSE $4 END WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(sealed_name)
        .bind(preferences)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if updated {
            // The correction and its audit entry commit together.
            super::audit::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// A sign-in's fresh copy of the provider's fields: the e-mail (and its index)
    /// always, the name only while the user has not corrected it. The picture has its
    /// own write (`set_user_picture`), once our copy of it is stored.
    pub async fn refresh_user_profile(
        &self,
        id: &UserId,
        sealed_email: &str,
        email_index: &str,
        sealed_name: &str,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE users SET email = $2, email_index = $3, \
             name = CASE WHEN name_edited_at IS NULL THEN $4 ELSE name END WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(sealed_email)
        .bind(email_index)
        .bind(sealed_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes `object_id` (a `picture` object just written) the user's profile picture,
    /// copied from the provider's `sealed_source` URL: it no longer expires, and the
    /// picture it replaces is due for the purge at once. One transaction.
    pub async fn set_user_picture(
        &self,
        user: &UserId,
        object_id: &str,
        sealed_source: &str,
        lasting_expiry: Option<Millis>,
        now: Millis,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        // The write first: SQLite transactions start with their write.
        sqlx::query(
            "UPDATE stored_objects SET expires_at = $2 WHERE id = $1 AND kind = 'picture' AND state = 'active'",
        )
        .bind(object_id)
        .bind(lasting_expiry)
        .execute(&mut *tx)
        .await?;
        let previous: Option<Option<String>> = sqlx::query_scalar("SELECT picture_object_id FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET picture_object_id = $2, picture_url = $3 WHERE id = $1")
            .bind(user.as_str())
            .bind(object_id)
            .bind(sealed_source)
            .execute(&mut *tx)
            .await?;
        if let Some(Some(old)) = previous.filter(|old| old.as_deref() != Some(object_id)) {
            super::objects::set_object_expiry(&mut tx, &old, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Accounts after `after_id` (in id order) whose sealed fields the re-encryption reads.
    pub async fn list_sealed_user_fields(&self, after_id: &str, limit: i64) -> DbResult<Vec<SealedUserFields>> {
        Ok(sqlx::query_as("SELECT id, email, name, picture_url, subject FROM users WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Rewrites one account's sealed fields and indexes, only if its e-mail is still the
    /// value that was read (a concurrent change wins; the next run reseals it).
    pub async fn reseal_user(&self, read: &SealedUserFields, new: &NewUser<'_>) -> DbResult<bool> {
        Ok(sqlx::query(
            "UPDATE users SET email = $1, name = $2, picture_url = $3, subject = $4, subject_index = $5, \
             email_index = $6 WHERE id = $7 AND email = $8 AND name = $9",
        )
        .bind(new.sealed_email)
        .bind(new.sealed_name)
        .bind(new.sealed_picture)
        .bind(new.sealed_subject)
        .bind(new.subject_index)
        .bind(new.email_index)
        .bind(&read.id)
        .bind(&read.email)
        .bind(&read.name)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// After rewriting values that must leave no trace: SQLite's write-ahead log still
    /// holds the pages as they were until a checkpoint truncates it. Dialect-specific
    /// (PostgreSQL keeps dead row versions until VACUUM, which a dump never shows).
    pub async fn forget_overwritten_values(&self) -> DbResult<()> {
        if self.dialect() == super::Dialect::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        }
        Ok(())
    }
}
