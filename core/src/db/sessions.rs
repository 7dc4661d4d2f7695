//! Sessions and personal API tokens: both stored as the SHA-256 of their secret, so a
//! database dump holds nothing that signs anybody in.

use crate::ids::{ApiTokenId, UserId};
use crate::time::Millis;

use super::users::USER_COLUMNS;
use super::{Db, DbResult, UserRow};

/// A live session's user, and when the session was last recorded as used.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionUser {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub last_seen_at: Millis,
}

/// A token's user, and which token it was.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenUser {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub token_id: String,
    pub last_used_at: Option<Millis>,
}

/// A token as listed: never its secret or hash.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

/// A Google sign-in in progress.
#[derive(Clone, sqlx::FromRow)]
pub struct SignInAttempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl Db {
    pub async fn insert_sign_in_attempt(
        &self,
        id_hash: &str,
        attempt: &SignInAttempt,
        expires_at: Millis,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO sign_in_attempts (id_hash, state, nonce, pkce_verifier, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(&attempt.state)
        .bind(&attempt.nonce)
        .bind(&attempt.pkce_verifier)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (deletes and returns) a sign-in attempt that has not expired: each is used once.
    pub async fn take_sign_in_attempt(&self, id_hash: &str, now: Millis) -> DbResult<Option<SignInAttempt>> {
        let taken: Option<(String, String, String, Millis)> = sqlx::query_as(
            "DELETE FROM sign_in_attempts WHERE id_hash = $1 RETURNING state, nonce, pkce_verifier, expires_at",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.filter(|(.., expires_at)| *expires_at > now).map(|(state, nonce, pkce_verifier, _)| SignInAttempt {
            state,
            nonce,
            pkce_verifier,
        }))
    }

    /// Removes abandoned sign-in attempts, at most `limit`; returns how many.
    pub async fn delete_expired_sign_in_attempts(&self, now: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM sign_in_attempts WHERE id_hash IN \
             (SELECT id_hash FROM sign_in_attempts WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Stores a session under the hash of its secret.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: &UserId,
        now: Millis,
        expires_at: Millis,
    ) -> DbResult<()> {
        sqlx::query(
            // Never for an account whose deletion was requested (a sign-in racing it).
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at) \
             SELECT $1, $2, $3, $4, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND deleted_at IS NULL)",
        )
        .bind(token_hash)
        .bind(user.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a session that has neither expired nor been idle since `idle_since`.
    pub async fn find_session_user(
        &self,
        token_hash: &str,
        now: Millis,
        idle_since: Millis,
    ) -> DbResult<Option<SessionUser>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS}, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 AND u.deleted_at IS NULL"
        )))
        .bind(token_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that a session was used (callers throttle this to once a minute).
    pub async fn touch_session(&self, token_hash: &str, now: Millis) -> DbResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $2")
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, token_hash: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends every session and revokes every API token of the user, in one transaction.
    /// Returns how many of each.
    pub async fn sign_out_everywhere(&self, user: &UserId) -> DbResult<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((sessions, tokens))
    }

    /// Removes sessions past their absolute expiry or idle since `idle_since`, at most
    /// `limit` of them; returns how many.
    pub async fn delete_expired_sessions(&self, now: Millis, idle_since: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM sessions WHERE token_hash IN \
             (SELECT token_hash FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2 LIMIT $3)",
        )
        .bind(now)
        .bind(idle_since)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn insert_api_token(
        &self,
        id: &ApiTokenId,
        user: &UserId,
        name: &str,
        token_hash: &str,
        now: Millis,
    ) -> DbResult<()> {
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str())
            .bind(user.as_str())
            .bind(name)
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a token that has not been revoked.
    pub async fn find_token_user(&self, token_hash: &str) -> DbResult<Option<TokenUser>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS}, t.id AS token_id, t.last_used_at FROM api_tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND u.deleted_at IS NULL"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that a token was used (callers throttle this to once a minute).
    pub async fn touch_api_token(&self, id: &str, now: Millis) -> DbResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user's tokens, newest first, after the cursor.
    pub async fn list_api_tokens(
        &self,
        user: &UserId,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<ApiTokenRow>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(user.as_str())
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many tokens the user holds.
    pub async fn count_api_tokens(&self, user: &UserId) -> DbResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Revokes one of the user's tokens. `false` when the user has no such token.
    pub async fn delete_api_token(&self, user: &UserId, id: &str) -> DbResult<bool> {
        Ok(sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }
}
