//! `POST /webhooks/stripe` (Stripe's events, each applied once) and `GET /v1/payments`
//! (the user's payment records; never card data, which never reaches us).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use petportrait_core::db::{EventOutcome, Purchase};
use petportrait_core::stripe::{CheckoutRequest, StripeError, verify_signature};
use petportrait_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::json::JsonBody;
use crate::pagination::{PageRequest, split_page};
use crate::views::Page;

/// Stripe's events are a few KB; this bounds what an unsigned sender makes us read.
pub const STRIPE_EVENT_MAX_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// The fields of a Checkout Session we read; the rest is Stripe's business.
#[derive(Deserialize)]
struct CheckoutSession {
    id: String,
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    amount_total: Option<i64>,
    currency: Option<String>,
    payment_status: Option<String>,
    payment_intent: Option<String>,
}

/// The fields of a refunded Charge we read.
#[derive(Deserialize)]
struct RefundedCharge {
    payment_intent: Option<String>,
    /// Cumulative, in minor units.
    amount_refunded: i64,
}

fn bad_request(code: &'static str, detail: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, detail)
}

pub async fn stripe_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<StatusCode> {
    let stripe = state.payments.stripe.as_ref().ok_or_else(ApiError::not_found)?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(refusal) = verify_signature(signature, &body, &stripe.webhook_secrets, now_ms() / 1000) {
        tracing::warn!(reason = %refusal, "a Stripe event was refused");
        return Err(bad_request("invalid_signature", "the Stripe-Signature header does not verify"));
    }
    let event: Event =
        serde_json::from_slice(&body).map_err(|_| bad_request("invalid_event", "the body is not a Stripe event"))?;
    let outcome = match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let session: CheckoutSession = serde_json::from_value(event.data.object.clone())
                .map_err(|_| bad_request("invalid_event", "the event carries no Checkout Session"))?;
            let paid = session.payment_status.as_deref() == Some("paid");
            if paid { fulfil(&state, &event.id, &event.kind, &session).await? } else { record(&state, &event).await? }
        }
        "charge.refunded" => {
            let charge: RefundedCharge = serde_json::from_value(event.data.object.clone())
                .map_err(|_| bad_request("invalid_event", "the event carries no charge"))?;
            match charge.payment_intent.as_deref() {
                Some(intent) => {
                    state
                        .services
                        .db
                        .apply_refund(&event.id, &event.kind, intent, charge.amount_refunded, now_ms())
                        .await?
                }
                None => record(&state, &event).await?,
            }
        }
        // Every other type is acknowledged, so Stripe does not send it again.
        _ => record(&state, &event).await?,
    };
    tracing::info!(stripe.event = %event.id, stripe.type = %event.kind, outcome = ?outcome, "Stripe event");
    Ok(StatusCode::OK)
}

async fn record(state: &AppState, event: &Event) -> ApiResult<EventOutcome> {
    Ok(state.services.db.record_stripe_event(&event.id, &event.kind, now_ms()).await?)
}

/// Grants the pack Stripe says was paid for: the pack named in the session's metadata,
/// only if the amount and currency paid are the pack's. The browser has no say.
async fn fulfil(state: &AppState, event_id: &str, kind: &str, session: &CheckoutSession) -> ApiResult<EventOutcome> {
    let pack = session.metadata.get("pack_id").and_then(|id| state.payments.packs.iter().find(|p| &p.id == id));
    let user_id = session.client_reference_id.as_deref();
    let (Some(pack), Some(user_id)) = (pack, user_id) else {
        tracing::error!(stripe.session = %session.id, "a paid session names no pack or user of ours; nothing granted");
        return Ok(state.services.db.record_stripe_event(event_id, kind, now_ms()).await?);
    };
    let currency = session.currency.as_deref().unwrap_or_default().to_ascii_lowercase();
    if session.amount_total != Some(pack.price) || currency != pack.currency {
        tracing::error!(
            stripe.session = %session.id,
            pack.id = %pack.id,
            paid = ?session.amount_total,
            currency = %currency,
            "a paid session's amount is not its pack's price; nothing granted"
        );
        return Ok(state.services.db.record_stripe_event(event_id, kind, now_ms()).await?);
    }
    let purchase = Purchase {
        user_id,
        pack_id: &pack.id,
        credits: pack.credits,
        amount: pack.price,
        currency: &pack.currency,
        checkout_session_id: &session.id,
        payment_intent_id: session.payment_intent.as_deref(),
    };
    Ok(state.services.db.apply_purchase(event_id, kind, &purchase, now_ms()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequestBody {
    pack_id: String,
}

#[derive(Serialize)]
pub struct CheckoutView {
    checkout_url: String,
    session_id: String,
}

/// `POST /v1/checkout {pack_id}`: a Stripe Checkout Session for one pack. Nothing is
/// recorded here: credits come only from Stripe's signed events.
pub async fn create_checkout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CheckoutRequestBody>,
) -> ApiResult<(StatusCode, Json<CheckoutView>)> {
    let stripe = state.stripe.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "purchases_unavailable", "purchases are not available here")
    })?;
    let pack =
        state.payments.packs.iter().find(|p| p.id == request.pack_id).ok_or_else(|| {
            ApiError::unprocessable("unknown_pack", "no such credit pack (GET /v1/credits lists them)")
        })?;
    // A client's retry with its Idempotency-Key reaches Stripe with the same key, so
    // Stripe answers with the same session instead of opening a second one.
    let client_key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty() && k.len() <= 255);
    let idempotency_key = match client_key {
        Some(key) => format!("checkout-{}-{}-{key}", user.id, pack.id),
        None => format!("checkout-{}", ulid::Ulid::generate()),
    };
    let success_url = format!("{}/?checkout=success&session_id={{CHECKOUT_SESSION_ID}}", state.public_url);
    let cancel_url = format!("{}/?checkout=canceled", state.public_url);
    let checkout = CheckoutRequest {
        user_id: &user.id,
        pack,
        success_url: &success_url,
        cancel_url: &cancel_url,
        idempotency_key: &idempotency_key,
    };
    match stripe.create_checkout_session(&checkout).await {
        Ok(session) => {
            tracing::info!(user.id = %user.id, pack.id = %pack.id, stripe.session = %session.id, "checkout started");
            Ok((StatusCode::CREATED, Json(CheckoutView { checkout_url: session.url, session_id: session.id })))
        }
        Err(StripeError::Unavailable(cause)) => {
            let chain = cause.as_ref().map(|e| petportrait_core::errors::error_chain(e)).unwrap_or_default();
            tracing::warn!(error = %chain, "Stripe is unavailable");
            Err(ApiError::unavailable(
                "payment_provider_unavailable",
                "payments are unavailable right now; nothing was charged, try again shortly",
                30,
            ))
        }
        Err(error @ StripeError::Refused { .. }) => {
            tracing::error!(error = %error, "Stripe refused a Checkout Session");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                "the payment provider refused the checkout",
            ))
        }
    }
}

#[derive(Serialize)]
pub struct PaymentView {
    id: String,
    pack_id: String,
    credits: i64,
    amount: i64,
    currency: String,
    status: String,
    provider_reference: String,
    created_at: String,
}

pub async fn list_payments(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<PaymentView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let rows = state.services.db.list_payments(&user.user_id(), page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    let data = rows
        .into_iter()
        .map(|r| PaymentView {
            id: r.id,
            pack_id: r.pack_id,
            credits: r.credits,
            amount: r.amount,
            currency: r.currency,
            status: r.status,
            provider_reference: r.checkout_session_id,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Json(Page { data, next_cursor }))
}
