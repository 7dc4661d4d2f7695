//! Webhook secrets, endpoints, and the announcement of a generation's events as
//! deliveries (each one then sent by a job: `deliveries.rs`).

use crate::time::Millis;

use super::{Db, DbResult};

/// An endpoint as stored; `secret` is sealed (and `None` for a per-generation URL,
/// which the account's secrets sign).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WebhookEndpointRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub url: String,
    /// A JSON array of event types.
    pub events: String,
    pub secret: Option<String>,
    pub enabled: i64,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Millis>,
    pub failing_since: Option<Millis>,
    pub last_success_at: Option<Millis>,
    pub created_at: Millis,
}

/// An endpoint kind: registered by the account, or a generation's own `webhook`.
pub const ENDPOINT_ACCOUNT: &str = "account";
pub const ENDPOINT_GENERATION: &str = "generation";

const ENDPOINT_COLUMNS: &str = "id, user_id, kind, url, events, secret, enabled, disabled_reason, disabled_at, \
                                failing_since, last_success_at, created_at";

/// Who hears about one generation: an enabled account endpoint (with the event types
/// it asked for), or the generation's own `webhook` (with its filter).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Subscriber {
    pub endpoint_id: String,
    pub kind: String,
    pub events: String,
    /// The generation's `webhook_events_filter` (JSON), for its own endpoint.
    pub filter: Option<String>,
}

/// A delivery about to be made.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub generation_id: Option<String>,
    pub event_type: &'static str,
    pub body: String,
}

/// A sealed account secret and until when it signs (`None`: the current one).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WebhookSecretRow {
    pub id: String,
    pub secret: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

impl Db {
    /// The account's secrets that still sign at `now`, the current one first.
    pub async fn webhook_secrets(&self, user: &str, now: Millis) -> DbResult<Vec<WebhookSecretRow>> {
        Ok(sqlx::query_as(
            "SELECT id, secret, created_at, expires_at FROM webhook_secrets \
             WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY CASE WHEN expires_at IS NULL THEN 0 ELSE 1 END, created_at DESC",
        )
        .bind(user)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores `sealed` as the account's current secret unless it has one. Returns whether
    /// it was stored (a concurrent first request may have stored its own).
    pub async fn add_first_webhook_secret(&self, id: &str, user: &str, sealed: &str, now: Millis) -> DbResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_secrets (id, user_id, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) WHERE expires_at IS NULL DO NOTHING",
        )
        .bind(id)
        .bind(user)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Makes `sealed` the current secret; the one it replaces signs until `overlap_until`.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        user: &str,
        sealed: &str,
        now: Millis,
        overlap_until: Millis,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE webhook_secrets SET expires_at = $2 WHERE user_id = $1 AND expires_at IS NULL")
            .bind(user)
            .bind(overlap_until)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO webhook_secrets (id, user_id, secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(user)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Registers an account endpoint.
    pub async fn create_webhook_endpoint(&self, row: &WebhookEndpointRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, user_id, kind, url, events, secret, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
        )
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.kind)
        .bind(&row.url)
        .bind(&row.events)
        .bind(&row.secret)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The endpoint row of a generation's own `webhook` URL for `user`, made on first
    /// use and enabled again by a new generation naming it (the person asked again).
    pub async fn generation_endpoint(
        &self,
        id: &str,
        user: &str,
        url: &str,
        events: &str,
        now: Millis,
    ) -> DbResult<String> {
        Ok(sqlx::query_scalar(
            "INSERT INTO webhook_endpoints (id, user_id, kind, url, events, enabled, created_at) \
             VALUES ($1, $2, 'generation', $3, $4, 1, $5) \
             ON CONFLICT (user_id, url) WHERE kind = 'generation' \
             DO UPDATE SET enabled = 1, disabled_reason = NULL, disabled_at = NULL \
             RETURNING id",
        )
        .bind(id)
        .bind(user)
        .bind(url)
        .bind(events)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The account's registered endpoints, oldest first.
    pub async fn list_webhook_endpoints(&self, user: &str) -> DbResult<Vec<WebhookEndpointRow>> {
        Ok(sqlx::query_as(super::generations::sql(&[
            "SELECT ",
            ENDPOINT_COLUMNS,
            " FROM webhook_endpoints WHERE user_id = $1 AND kind = 'account' ORDER BY created_at, id",
        ]))
        .bind(user)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One endpoint of `user` (either kind).
    pub async fn get_webhook_endpoint(&self, id: &str, user: &str) -> DbResult<Option<WebhookEndpointRow>> {
        Ok(sqlx::query_as(super::generations::sql(&[
            "SELECT ",
            ENDPOINT_COLUMNS,
            " FROM webhook_endpoints WHERE id = $1 AND user_id = $2",
        ]))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deletes an account endpoint with its deliveries. Returns whether it existed.
    pub async fn delete_webhook_endpoint(&self, id: &str, user: &str) -> DbResult<bool> {
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND user_id = $2 AND kind = 'account'")
            .bind(id)
            .bind(user)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    /// Turns an endpoint back on after it was disabled, and forgets its failures.
    pub async fn enable_webhook_endpoint(&self, id: &str, user: &str) -> DbResult<bool> {
        let changed = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 1, disabled_reason = NULL, disabled_at = NULL, \
             failing_since = NULL WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// How many endpoints the account has registered.
    pub async fn count_webhook_endpoints(&self, user: &str) -> DbResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE user_id = $1 AND kind = 'account'")
            .bind(user)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The announcement marks of a generation: `(webhook_stage, webhook_progress_at)`.
    pub async fn webhook_marks(&self, generation: &str) -> DbResult<Option<(i64, Millis)>> {
        Ok(sqlx::query_as("SELECT webhook_stage, webhook_progress_at FROM generations WHERE id = $1")
            .bind(generation)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The endpoints that hear about `generation` of `user` now.
    pub async fn webhook_subscribers(&self, user: &str, generation: &str) -> DbResult<Vec<Subscriber>> {
        Ok(sqlx::query_as(
            "SELECT e.id AS endpoint_id, e.kind, e.events, g.events AS filter \
             FROM webhook_endpoints e \
             LEFT JOIN generation_webhooks g ON g.endpoint_id = e.id AND g.generation_id = $2 \
             WHERE e.user_id = $1 AND e.enabled = 1 AND (e.kind = 'account' OR g.generation_id IS NOT NULL)",
        )
        .bind(user)
        .bind(generation)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The user's enabled account endpoints (events not about a generation go to these).
    pub async fn account_subscribers(&self, user: &str) -> DbResult<Vec<Subscriber>> {
        Ok(sqlx::query_as(
            "SELECT id AS endpoint_id, kind, events, CAST(NULL AS TEXT) AS filter FROM webhook_endpoints \
             WHERE user_id = $1 AND enabled = 1 AND kind = 'account'",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Moves the generation's marks from `from` to `to` and records `deliveries`, in
    /// one transaction. `false` (and nothing recorded) when another announcement moved
    /// the marks first: the caller reads the row again.
    pub async fn record_announcement(
        &self,
        generation: &str,
        from: (i64, Millis),
        to: (i64, Millis),
        deliveries: &[NewDelivery],
        now: Millis,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE generations SET webhook_stage = $4, webhook_progress_at = $5 \
             WHERE id = $1 AND webhook_stage = $2 AND webhook_progress_at = $3",
        )
        .bind(generation)
        .bind(from.0)
        .bind(from.1)
        .bind(to.0)
        .bind(to.1)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_deliveries(&mut tx, deliveries, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Generations whose events lag their state (a process stopped between a change
    /// and its announcement) and that have not moved since `quiet_since`.
    pub async fn unannounced_generations(&self, quiet_since: Millis, limit: i64) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM generations WHERE webhook_stage < 2 AND updated_at < $1 \
             AND (status IN ('succeeded', 'failed', 'canceled') \
                  OR (webhook_stage = 0 AND status IN ('starting', 'processing'))) \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(quiet_since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A sealed webhook secret: the table's column, its row, the sealed text.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SealedWebhookSecret {
    pub endpoint: bool,
    pub id: String,
    pub sealed: String,
}

impl Db {
    /// Every sealed webhook secret (the accounts' and the endpoints'), for a key rotation.
    pub async fn sealed_webhook_secrets(&self) -> DbResult<Vec<SealedWebhookSecret>> {
        let accounts: Vec<(String, String)> =
            sqlx::query_as("SELECT id, secret FROM webhook_secrets").fetch_all(&self.pool).await?;
        let endpoints: Vec<(String, String)> =
            sqlx::query_as("SELECT id, secret FROM webhook_endpoints WHERE secret IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        let tag = |endpoint: bool| move |(id, sealed): (String, String)| SealedWebhookSecret { endpoint, id, sealed };
        Ok(accounts.into_iter().map(tag(false)).chain(endpoints.into_iter().map(tag(true))).collect())
    }

    /// Replaces a sealed secret if it is still `old`. Returns whether it did.
    pub async fn reseal_webhook_secret(&self, secret: &SealedWebhookSecret, new: &str) -> DbResult<bool> {
        let sql = if secret.endpoint {
            "UPDATE webhook_endpoints SET secret = $3 WHERE id = $1 AND secret = $2"
        } else {
            "UPDATE webhook_secrets SET secret = $3 WHERE id = $1 AND secret = $2"
        };
        let changed =
            sqlx::query(sql).bind(&secret.id).bind(&secret.sealed).bind(new).execute(&self.pool).await?.rows_affected();
        Ok(changed == 1)
    }
}

/// Records deliveries, due now, within the transaction of the change they announce.
pub(super) async fn insert_deliveries(
    tx: &mut sqlx::AnyConnection,
    deliveries: &[NewDelivery],
    now: Millis,
) -> DbResult<()> {
    for delivery in deliveries {
        sqlx::query(
            "INSERT INTO webhook_deliveries \
             (id, endpoint_id, generation_id, event_type, body, status, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
        )
        .bind(&delivery.id)
        .bind(&delivery.endpoint_id)
        .bind(&delivery.generation_id)
        .bind(delivery.event_type)
        .bind(&delivery.body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
