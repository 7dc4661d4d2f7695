//! Webhooks sent by the platform, following the Standard Webhooks specification.
//!
//! A change of a generation is announced after it commits (`announce`): the events it
//! owes (`events::plan`) become one delivery per subscribed endpoint, recorded in the
//! same transaction that moves the generation's announcement marks, so an event is
//! made once however many processes announce it. Each delivery is then a job on the
//! delivery queue (the worker's `webhook` module makes the attempts). What a crash
//! leaves behind, the scheduler finds: generations whose marks lag their state, and
//! pending deliveries whose job was lost.

pub mod events;
pub mod schedule;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::WebhookConfig;
use crate::db::{Db, DbError, GenerationRow, NewDelivery, Subscriber};
use crate::domain::{EventType, GenerationEventFilter};
use crate::errors::error_chain;
use crate::outbound::{Outbound, OutboundError};
use crate::queue::{JobQueue, JobQueueError};
use crate::sealing::{ENDPOINT_SECRET, Keyring, SealError, WEBHOOK_SECRET};
use crate::time::{Millis, duration_ms, now_ms, rfc3339};
use crate::views::GenerationView;
use events::Marks;
pub use signing::{SigningSecret, signature_header};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook storage failed")]
    Db(#[from] DbError),
    #[error("a webhook secret cannot be opened")]
    Seal(#[from] SealError),
    #[error("a stored webhook secret is malformed")]
    MalformedSecret,
    #[error("queueing a delivery failed")]
    Queue(#[from] JobQueueError),
}

/// The account's secret for per-generation webhooks, and when the previous ones stop
/// signing.
#[derive(Clone, Debug)]
pub struct AccountSecret {
    pub secret: SigningSecret,
    pub created_at: Millis,
    pub previous_expire_at: Vec<Millis>,
}

/// The body of every delivery: `{type, timestamp, data}`.
#[derive(Serialize)]
struct Payload<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a T,
}

/// Webhook secrets, announcements and delivery jobs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Webhooks {
    db: Db,
    queue: JobQueue,
    keyring: Arc<Keyring>,
    outbound: Outbound,
    /// `PUBLIC_URL`: links in payloads are absolute, receivers have no page to resolve them against.
    public_url: String,
    config: WebhookConfig,
}

impl Webhooks {
    pub fn new(
        db: Db,
        queue: JobQueue,
        keyring: Arc<Keyring>,
        outbound: Outbound,
        public_url: String,
        config: WebhookConfig,
    ) -> Webhooks {
        Webhooks { db, queue, keyring, outbound, public_url, config }
    }

    /// The same, sending through `outbound` (tests resolve names their own way).
    pub fn with_outbound(mut self, outbound: Outbound) -> Webhooks {
        self.outbound = outbound;
        self
    }

    /// The same, sealing and opening secrets under `keyring` (a key rotation's tests).
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Webhooks {
        self.keyring = keyring;
        self
    }

    /// The one client deliveries go through.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Checks a URL someone asks us to call later: http(s), public, resolvable now.
    pub async fn check_url(&self, url: &str) -> Result<String, OutboundError> {
        Ok(self.outbound.check_reachable(url).await?.to_string())
    }

    /// Announces the generation's committed state to its subscribers. Never fails its
    /// caller: what it could not do, the scheduler's catch-up does.
    pub async fn announce(&self, generation: &str) {
        if let Err(error) = self.try_announce(generation).await {
            tracing::warn!(generation.id = generation, error = %error_chain(&error), "could not announce the generation's events; the scheduler will");
        }
    }

    /// Announces, reading again when another process moved the marks first.
    pub async fn try_announce(&self, generation: &str) -> Result<(), WebhookError> {
        let Some(id) = crate::ids::GenerationId::parse(generation) else { return Ok(()) };
        for _ in 0..5 {
            let Some(row) = self.db.get_generation(&id).await? else { return Ok(()) };
            let Some((stage, progress_at)) = self.db.webhook_marks(generation).await? else { return Ok(()) };
            let marks = Marks { stage, progress_at };
            let now = now_ms();
            let Some(plan) = events::plan(row.status, row.started_at.is_some(), marks, now) else { return Ok(()) };
            let subscribers = self.db.webhook_subscribers(&row.user_id, generation).await?;
            let wanted: Vec<(EventType, &Subscriber)> = plan
                .events
                .iter()
                .flat_map(|event| subscribers.iter().filter(|s| wants(s, *event)).map(move |s| (*event, s)))
                .collect();
            // A progress event nobody listens to needs no write at all.
            if wanted.is_empty() && plan.marks.stage == marks.stage {
                return Ok(());
            }
            let deliveries = if wanted.is_empty() { Vec::new() } else { self.deliveries(&row, &wanted, now).await? };
            let to = (plan.marks.stage, plan.marks.progress_at);
            if self.db.record_announcement(generation, (stage, progress_at), to, &deliveries, now).await? {
                for delivery in &deliveries {
                    self.push(&delivery.id, "first", Duration::ZERO).await;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// One delivery per wanted (event, endpoint), each event's body made once.
    async fn deliveries(
        &self,
        row: &GenerationRow,
        wanted: &[(EventType, &Subscriber)],
        now: Millis,
    ) -> Result<Vec<NewDelivery>, WebhookError> {
        let view = GenerationView::load(&self.db, row, &self.public_url).await?;
        let mut bodies: Vec<(EventType, String)> = Vec::new();
        let mut deliveries = Vec::with_capacity(wanted.len());
        for (event, subscriber) in wanted {
            let body = match bodies.iter().find(|(e, _)| e == event) {
                Some((_, body)) => body.clone(),
                None => {
                    let payload = Payload { kind: event.as_str(), timestamp: rfc3339(now), data: &view };
                    let body = serde_json::to_string(&payload).unwrap_or_default();
                    bodies.push((*event, body.clone()));
                    body
                }
            };
            deliveries.push(NewDelivery {
                id: new_message_id(),
                endpoint_id: subscriber.endpoint_id.clone(),
                generation_id: Some(row.id.clone()),
                event_type: event.as_str(),
                body,
            });
        }
        Ok(deliveries)
    }

    /// Pushes a delivery's job; a failed push is logged, and the scheduler pushes it
    /// again once it is overdue.
    pub async fn push(&self, delivery: &str, key: &str, delay: Duration) {
        if let Err(error) = self.queue.dispatch_delivery(delivery, key, delay).await {
            tracing::warn!(webhook.delivery = delivery, error = %error_chain(&error), "could not queue a delivery; the scheduler will");
        }
    }

    /// The account's current secret, made on first use, and when the previous ones end.
    pub async fn account_secret(&self, user: &str) -> Result<AccountSecret, WebhookError> {
        let now = now_ms();
        let mut rows = self.db.webhook_secrets(user, now).await?;
        if rows.first().is_none_or(|r| r.expires_at.is_some()) {
            let id = ulid::Ulid::generate().to_string();
            let sealed = self.keyring.seal(WEBHOOK_SECRET, &id, &SigningSecret::generate().to_text());
            self.db.add_first_webhook_secret(&id, user, &sealed, now).await?;
            rows = self.db.webhook_secrets(user, now).await?;
        }
        let current = rows.first().ok_or(WebhookError::MalformedSecret)?;
        let secret = self.open(WEBHOOK_SECRET, &current.id, &current.secret)?;
        Ok(AccountSecret {
            secret,
            created_at: current.created_at,
            previous_expire_at: rows.iter().filter_map(|r| r.expires_at).collect(),
        })
    }

    /// A new current secret; the replaced one signs for `WEBHOOK_SECRET_OVERLAP` more.
    pub async fn rotate_account_secret(&self, user: &str) -> Result<AccountSecret, WebhookError> {
        let now = now_ms();
        let id = ulid::Ulid::generate().to_string();
        let sealed = self.keyring.seal(WEBHOOK_SECRET, &id, &SigningSecret::generate().to_text());
        let overlap_until = now + duration_ms(self.config.secret_overlap);
        self.db.rotate_webhook_secret(&id, user, &sealed, now, overlap_until).await?;
        self.account_secret(user).await
    }

    /// Seals a new endpoint's own secret for its row.
    pub fn seal_endpoint_secret(&self, endpoint: &str, secret: &SigningSecret) -> String {
        self.keyring.seal(ENDPOINT_SECRET, endpoint, &secret.to_text())
    }

    /// The secrets that sign a delivery to `endpoint`: its own, or (a per-generation
    /// URL) every account secret still in force.
    pub async fn signing_secrets(
        &self,
        endpoint: &str,
        own: Option<&str>,
        user: &str,
    ) -> Result<Vec<SigningSecret>, WebhookError> {
        if let Some(sealed) = own {
            return Ok(vec![self.open(ENDPOINT_SECRET, endpoint, sealed)?]);
        }
        let rows = self.db.webhook_secrets(user, now_ms()).await?;
        if rows.is_empty() {
            // A generation's webhook was asked for before the secret was ever read.
            return Ok(vec![self.account_secret(user).await?.secret]);
        }
        rows.iter().map(|row| self.open(WEBHOOK_SECRET, &row.id, &row.secret)).collect()
    }

    fn open(&self, column: crate::sealing::Column, row: &str, sealed: &str) -> Result<SigningSecret, WebhookError> {
        let text = self.keyring.open(column, row, sealed)?;
        SigningSecret::parse(&text).ok_or(WebhookError::MalformedSecret)
    }
}

/// Reseals every webhook secret not sealed under the newest key (after a key rotation,
/// beside the accounts). Returns how many it resealed.
pub async fn reseal_secrets(db: &Db, keyring: &Keyring) -> Result<u64, WebhookError> {
    let mut resealed = 0;
    for secret in db.sealed_webhook_secrets().await? {
        if !keyring.needs_reseal(&secret.sealed) {
            continue;
        }
        let column = if secret.endpoint { ENDPOINT_SECRET } else { WEBHOOK_SECRET };
        let text = keyring.open(column, &secret.id, &secret.sealed)?;
        if db.reseal_webhook_secret(&secret, &keyring.seal(column, &secret.id, &text)).await? {
            resealed += 1;
        }
    }
    Ok(resealed)
}

/// `msg_<ulid>`: the `webhook-id` of a delivery, the same on every attempt.
fn new_message_id() -> String {
    crate::ids::DeliveryId::generate().to_string()
}

impl Webhooks {
    /// The deliveries of an event about the user's account rather than a generation
    /// (`privacy_export.ready`), one per account endpoint that asked for it, to record in
    /// the transaction of the change; `push` their jobs after it commits.
    pub async fn account_event_deliveries<T: Serialize>(
        &self,
        user: &str,
        event: EventType,
        data: &T,
        now: Millis,
    ) -> Result<Vec<NewDelivery>, WebhookError> {
        let subscribers = self.db.account_subscribers(user).await?;
        let payload = Payload { kind: event.as_str(), timestamp: rfc3339(now), data };
        let body = serde_json::to_string(&payload).unwrap_or_default();
        Ok(subscribers
            .iter()
            .filter(|s| wants(s, event))
            .map(|s| NewDelivery {
                id: new_message_id(),
                endpoint_id: s.endpoint_id.clone(),
                generation_id: None,
                event_type: event.as_str(),
                body: body.clone(),
            })
            .collect())
    }

    /// `PUBLIC_URL`, for absolute links in events.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

/// Whether `subscriber` asked for `event`.
fn wants(subscriber: &Subscriber, event: EventType) -> bool {
    match &subscriber.filter {
        Some(filter) => serde_json::from_str::<Vec<String>>(filter)
            .unwrap_or_default()
            .iter()
            .filter_map(|word| GenerationEventFilter::parse(word))
            .any(|word| word.admits(event)),
        None => serde_json::from_str::<Vec<String>>(&subscriber.events)
            .unwrap_or_default()
            .iter()
            .any(|name| name == event.as_str()),
    }
}
