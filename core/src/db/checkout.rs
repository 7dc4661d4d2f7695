//! `Idempotency-Key` on `POST /v1/checkout`: a key is claimed before Stripe is asked,
//! completed with the session Stripe opened, or released when Stripe could not open one.

use crate::ids::UserId;
use crate::time::Millis;

use super::{Db, DbResult};

/// What claiming a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckoutClaim {
    /// The key is this request's: ask Stripe, then complete or release it.
    Claimed,
    /// The key was used with another request body.
    Conflict,
    /// The first request with this key is still asking Stripe.
    InFlight,
    /// The first request opened this session: answer with it again.
    Replay { session_id: String, checkout_url: String },
}

#[derive(sqlx::FromRow)]
struct CheckoutRequestRow {
    request_fingerprint: String,
    session_id: Option<String>,
    checkout_url: Option<String>,
    created_at: Millis,
}

impl Db {
    /// Claims `key` for the request with `fingerprint`. A claim left in flight since
    /// before `abandoned_before` (its process died while asking Stripe) is taken over
    /// by a request with the same body.
    pub async fn claim_checkout_key(
        &self,
        user: &UserId,
        key: &str,
        fingerprint: &str,
        now: Millis,
        abandoned_before: Millis,
    ) -> DbResult<CheckoutClaim> {
        let inserted = sqlx::query(
            "INSERT INTO checkout_requests (user_id, idempotency_key, request_fingerprint, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(CheckoutClaim::Claimed);
        }
        let existing: Option<CheckoutRequestRow> = sqlx::query_as(
            "SELECT request_fingerprint, session_id, checkout_url, created_at FROM checkout_requests \
             WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(existing) = existing else {
            // Released (or purged) between our insert and this read: the caller may retry.
            return Ok(CheckoutClaim::InFlight);
        };
        if existing.request_fingerprint != fingerprint {
            return Ok(CheckoutClaim::Conflict);
        }
        if let (Some(session_id), Some(checkout_url)) = (existing.session_id, existing.checkout_url) {
            return Ok(CheckoutClaim::Replay { session_id, checkout_url });
        }
        if existing.created_at >= abandoned_before {
            return Ok(CheckoutClaim::InFlight);
        }
        // Taken over only if nobody else took it over first.
        let taken = sqlx::query(
            "UPDATE checkout_requests SET created_at = $4 \
             WHERE user_id = $1 AND idempotency_key = $2 AND session_id IS NULL AND created_at = $3",
        )
        .bind(user.as_str())
        .bind(key)
        .bind(existing.created_at)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if taken == 1 { CheckoutClaim::Claimed } else { CheckoutClaim::InFlight })
    }

    /// Records the session Stripe opened for the claimed `key`.
    pub async fn complete_checkout_key(
        &self,
        user: &UserId,
        key: &str,
        session_id: &str,
        checkout_url: &str,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE checkout_requests SET session_id = $3, checkout_url = $4 \
             WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user.as_str())
        .bind(key)
        .bind(session_id)
        .bind(checkout_url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up the claimed `key` (Stripe opened nothing), so a retry may ask again.
    pub async fn release_checkout_key(&self, user: &UserId, key: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM checkout_requests WHERE user_id = $1 AND idempotency_key = $2 AND session_id IS NULL")
            .bind(user.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` keys claimed before `before`.
    pub async fn delete_checkout_keys_before(&self, before: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM checkout_requests WHERE (user_id, idempotency_key) IN \
             (SELECT user_id, idempotency_key FROM checkout_requests WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
