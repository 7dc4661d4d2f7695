//! Users and their sessions.

use crate::domain::LedgerKind;
use crate::ids::UserId;
use crate::time::Millis;

use super::credits::insert_ledger_entry;
use super::{Db, DbResult, UserRow};

impl Db {
    /// Finds the user with this e-mail or creates one with `starter_credits`, granted
    /// through the ledger in the same transaction. Returns the user and whether it is new.
    pub async fn find_or_create_user(
        &self,
        email: &str,
        name: &str,
        starter_credits: i64,
        now: Millis,
    ) -> DbResult<(UserRow, bool)> {
        if let Some(user) = self.find_user_by_email(email).await? {
            return Ok((user, false));
        }
        let id = UserId::generate();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, credits_balance, credits_held, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (email) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(email)
        .bind(name)
        .bind(starter_credits)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another request created the same user between our read and our insert.
            tx.rollback().await?;
            let user = self.find_user_by_email(email).await?;
            return user.map(|u| (u, false)).ok_or_else(|| super::DbError::Corrupt("user vanished".into()));
        }
        if starter_credits > 0 {
            insert_ledger_entry(&mut tx, id.as_str(), LedgerKind::Grant, starter_credits, None, now).await?;
        }
        tx.commit().await?;
        let user = self.get_user(&id).await?;
        user.map(|u| (u, true)).ok_or_else(|| super::DbError::Corrupt("user vanished".into()))
    }

    pub async fn find_user_by_email(&self, email: &str) -> DbResult<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT id, email, name, picture_url, preferences, credits_balance, credits_held, created_at \
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_user(&self, id: &UserId) -> DbResult<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT id, email, name, picture_url, preferences, credits_balance, credits_held, created_at \
             FROM users WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a session under the hash of its secret.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: &UserId,
        now: Millis,
        expires_at: Millis,
    ) -> DbResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a live session.
    pub async fn find_session_user(&self, token_hash: &str, now: Millis) -> DbResult<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.picture_url, u.preferences, u.credits_balance, u.credits_held, u.created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Removes expired sessions, at most `limit` of them; returns how many.
    pub async fn delete_expired_sessions(&self, now: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM sessions WHERE token_hash IN \
             (SELECT token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
