//! `POST /webhooks/stripe` (Stripe's events, each applied once) and `GET /v1/payments`
//! (the user's payment records; never card data, which never reaches us).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use petportrait_core::db::{CheckoutClaim, EventOutcome};
use petportrait_core::stripe::{CheckoutRequest, CheckoutSession, StripeError, purchase_for, verify_signature};
use petportrait_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::idempotency::{self, fingerprint, idempotency_key};
use crate::json::{JsonBytes, parse_json};
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

#[utoipa::path(post, path = "/webhooks/stripe", tag = "credits", params(
    ("Stripe-Signature" = String, Header, description = "Stripe's signature of the body"),
), request_body(content = Object, description = "A Stripe event", content_type = "application/json"), responses(
    (status = 200, description = "The event is recorded (applied at most once)"),
    (status = 400, description = "`invalid_signature`: the signature does not verify with any configured secret.\n\n`invalid_event`: not a Stripe event of the expected shape."),
    (status = 404, description = "`not_found`: purchases are off (no Stripe keys)."),
))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let stripe = state.payments.stripe.as_ref().ok_or_else(ApiError::not_found)?;
    // A body over the route's limit, or one that could not be read, as problem+json.
    let body = body.map_err(|rejection| {
        let code =
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_body" };
        ApiError::new(rejection.status(), code, rejection.body_text())
    })?;
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
            if session.is_paid() {
                fulfil(&state, &event.id, &event.kind, &session).await?
            } else {
                record(&state, &event).await?
            }
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

/// Grants the pack Stripe says was paid for (see `purchase_for`). The browser has no say.
async fn fulfil(state: &AppState, event_id: &str, kind: &str, session: &CheckoutSession) -> ApiResult<EventOutcome> {
    match purchase_for(&state.payments.packs, session) {
        Ok(purchase) => Ok(state.services.db.apply_purchase(event_id, kind, &purchase, now_ms()).await?),
        Err(not_ours) => {
            tracing::error!(stripe.session = %session.id, reason = %not_ours, "a paid session buys nothing here");
            Ok(state.services.db.record_stripe_event(event_id, kind, now_ms()).await?)
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequestBody {
    pack_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckoutView {
    checkout_url: String,
    session_id: String,
}

/// A claimed `Idempotency-Key` whose request has not been answered for this long is
/// taken to be abandoned (its process died while asking Stripe, whose calls time out
/// after 15 s) and may be taken over by a retry with the same body.
const CHECKOUT_CLAIM_ABANDONED_MS: i64 = 60_000;

/// `POST /v1/checkout {pack_id}`: a Stripe Checkout Session for one pack. Nothing is
/// recorded as paid here: credits come only from Stripe's signed events. With an
/// `Idempotency-Key`, a retry gets the first answer again (and never a second session).
#[utoipa::path(post, path = "/v1/checkout", tag = "credits", security(("session" = []), ("bearer" = [])), params(
    ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body answers the same session"),
), request_body = CheckoutRequestBody, responses(
    (status = 201, description = "A Stripe Checkout Session: send the person to `checkout_url`", body = CheckoutView),
    (status = 400, description = "`invalid_idempotency_key`: not 1 to 255 visible ASCII characters."),
    (status = 404, description = "`purchases_unavailable`: purchases are off here."),
    (status = 409, description = "`idempotency_in_progress`: the first request with this key is still being answered."),
    (status = 422, description = "`unknown_pack`: not a pack of `GET /v1/credits`.\n\n`idempotency_conflict`: the key was used with another body."),
    (status = 502, description = "`payment_provider_error`: Stripe refused the session."),
    (status = 503, description = "`payment_provider_unavailable`: Stripe did not answer (`Retry-After`)."),
))]
pub async fn create_checkout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let stripe = state.stripe.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "purchases_unavailable", "purchases are not available here")
    })?;
    let key = idempotency_key(&headers)?;
    let request: CheckoutRequestBody = parse_json(&body)?;
    let pack =
        state.payments.packs.iter().find(|p| p.id == request.pack_id).ok_or_else(|| {
            ApiError::unprocessable("unknown_pack", "no such credit pack (GET /v1/credits lists them)")
        })?;
    let user_id = user.user_id();
    let db = &state.services.db;
    if let Some(key) = &key {
        let now = now_ms();
        match db.claim_checkout_key(&user_id, key, &fingerprint(&body), now, now - CHECKOUT_CLAIM_ABANDONED_MS).await? {
            CheckoutClaim::Claimed => {}
            CheckoutClaim::Conflict => return Err(idempotency::conflict()),
            CheckoutClaim::InFlight => return Err(idempotency::in_progress()),
            CheckoutClaim::Replay { session_id, checkout_url } => {
                return Ok(created(CheckoutView { checkout_url, session_id }, true));
            }
        }
    }
    // Stripe gets an idempotency key of its own too: a call retried after a lost answer
    // (or by a request that took over an abandoned claim) opens no second session.
    let stripe_key = match &key {
        Some(key) => format!("checkout-{}-{key}", user.id),
        None => format!("checkout-{}", ulid::Ulid::generate()),
    };
    let success_url = format!("{}/?checkout=success&session_id={{CHECKOUT_SESSION_ID}}", state.public_url);
    let cancel_url = format!("{}/?checkout=canceled", state.public_url);
    let checkout = CheckoutRequest {
        user_id: &user.id,
        pack,
        success_url: &success_url,
        cancel_url: &cancel_url,
        idempotency_key: &stripe_key,
    };
    let outcome = stripe.create_checkout_session(&checkout).await;
    match (&outcome, &key) {
        (Ok(session), Some(key)) => db.complete_checkout_key(&user_id, key, &session.id, &session.url).await?,
        (Err(_), Some(key)) => db.release_checkout_key(&user_id, key).await?,
        (_, None) => {}
    }
    match outcome {
        Ok(session) => {
            tracing::info!(user.id = %user.id, pack.id = %pack.id, stripe.session = %session.id, "checkout started");
            Ok(created(CheckoutView { checkout_url: session.url, session_id: session.id }, false))
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

fn created(view: CheckoutView, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if replayed {
        response.headers_mut().insert(idempotency::REPLAYED_HEADER, idempotency::replayed_value());
    }
    response
}

#[derive(Serialize, utoipa::ToSchema)]
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

#[utoipa::path(get, path = "/v1/payments", tag = "credits", security(("session" = []), ("bearer" = [])), params(crate::openapi::PageParams), responses(
    (status = 200, description = "The caller's purchases, newest first", body = Page<PaymentView>),
))]
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
