//! A fake of Stripe's API for the tests, on 127.0.0.1:0: `POST /v1/checkout/sessions`
//! records each request (its form fields and headers) and answers a session, or a
//! server error when told to; `GET /v1/checkout/sessions` lists the sessions the test
//! marked paid, newest first, two per page (Stripe's `limit` is an upper bound), with
//! its `created[gte]`, `status` and `starting_after` filters. Events are signed and
//! posted by the tests themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;

/// One Checkout Session request as Stripe received it.
#[derive(Clone, Debug)]
pub struct SessionRequest {
    pub form: HashMap<String, String>,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
}

#[derive(Default)]
struct Seen {
    requests: Vec<SessionRequest>,
    failing: bool,
    /// Sessions by idempotency key, as Stripe replays them.
    by_key: HashMap<String, String>,
    /// Every session created, oldest first.
    sessions: Vec<Session>,
    list_calls: usize,
}

/// A session as the fake keeps it.
#[derive(Clone, Debug)]
struct Session {
    id: String,
    form: HashMap<String, String>,
    created: i64,
    paid: bool,
}

/// The most sessions one list page holds here.
const LIST_PAGE: usize = 2;

#[derive(Clone)]
pub struct FakeStripe {
    pub base_url: String,
    seen: Arc<Mutex<Seen>>,
    /// Session requests wait for a read lock; `hold` takes the write lock.
    gate: Arc<tokio::sync::RwLock<()>>,
}

#[derive(Clone)]
struct FakeState {
    seen: Arc<Mutex<Seen>>,
    gate: Arc<tokio::sync::RwLock<()>>,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake Stripe");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let state = FakeState { seen: seen.clone(), gate: gate.clone() };
        let app =
            Router::new().route("/v1/checkout/sessions", post(create_session).get(list_sessions)).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeStripe { base_url, seen, gate }
    }

    /// Holds every session request (recorded, not answered) until the guard is dropped.
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }

    pub fn requests(&self) -> Vec<SessionRequest> {
        self.seen.lock().expect("seen").requests.clone()
    }

    /// The customer paid for `session`: it is listed as complete and paid from now on.
    pub fn mark_paid(&self, session: &str) {
        let mut seen = self.seen.lock().expect("seen");
        let found = seen.sessions.iter_mut().find(|s| s.id == session).expect("a session the fake opened");
        found.paid = true;
    }

    /// Every session opened so far, oldest first: its id and the form it was made with.
    pub fn sessions(&self) -> Vec<(String, HashMap<String, String>)> {
        self.seen.lock().expect("seen").sessions.iter().map(|s| (s.id.clone(), s.form.clone())).collect()
    }

    /// How many list calls were answered (not counting refused ones).
    pub fn list_calls(&self) -> usize {
        self.seen.lock().expect("seen").list_calls
    }

    /// From now on, answer every call with a 500.
    pub fn fail(&self, failing: bool) {
        self.seen.lock().expect("seen").failing = failing;
    }
}

async fn create_session(
    State(state): State<FakeState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request = SessionRequest {
        form,
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
    };
    state.seen.lock().expect("seen").requests.push(request.clone());
    let _pass = state.gate.read().await;
    let mut seen = state.seen.lock().expect("seen");
    if seen.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "down"}}))).into_response();
    }
    let fresh = format!("cs_test_{:04}", seen.requests.len());
    let id = match &request.idempotency_key {
        Some(key) => seen.by_key.entry(key.clone()).or_insert(fresh.clone()).clone(),
        None => fresh.clone(),
    };
    if id == fresh {
        let created = petportrait_core::time::now_ms() / 1000;
        seen.sessions.push(Session { id: id.clone(), form: request.form.clone(), created, paid: false });
    }
    axum::Json(
        json!({"id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.com/c/pay/{id}")}),
    )
    .into_response()
}

async fn list_sessions(
    State(state): State<FakeState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut seen = state.seen.lock().expect("seen");
    if seen.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "down"}}))).into_response();
    }
    if headers.get("authorization").is_none() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "no key"}}))).into_response();
    }
    seen.list_calls += 1;
    let since: i64 = query.get("created[gte]").and_then(|v| v.parse().ok()).unwrap_or(0);
    let complete_only = query.get("status").map(String::as_str) == Some("complete");
    let limit: usize = query.get("limit").and_then(|v| v.parse().ok()).unwrap_or(10).min(LIST_PAGE);
    // Newest first, as Stripe lists; in this fake only paid sessions are complete.
    let matching: Vec<&Session> =
        seen.sessions.iter().rev().filter(|s| s.created >= since && (s.paid || !complete_only)).collect();
    let start = match query.get("starting_after") {
        Some(after) => matching.iter().position(|s| &s.id == after).map_or(matching.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<serde_json::Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|s| {
            let field = |k: &str| s.form.get(k).cloned();
            json!({
                "id": s.id,
                "object": "checkout.session",
                "created": s.created,
                "status": if s.paid { "complete" } else { "open" },
                "payment_status": if s.paid { "paid" } else { "unpaid" },
                "client_reference_id": field("client_reference_id"),
                "metadata": {"pack_id": field("metadata[pack_id]"), "user_id": field("metadata[user_id]")},
                "amount_total": field("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()),
                "currency": field("line_items[0][price_data][currency]"),
                "payment_intent": format!("pi_for_{}", s.id),
            })
        })
        .collect();
    let has_more = matching.len() > start + page.len();
    axum::Json(json!({"object": "list", "url": "/v1/checkout/sessions", "has_more": has_more, "data": page}))
        .into_response()
}

/// A `Stripe-Signature` header as Stripe makes it: `t=…,v1=hex(HMAC-SHA256("{t}.{body}"))`.
pub fn signature(body: &str, secret: &str, at: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{at}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={at},v1={hex}")
}

/// Stripe's `checkout.session.completed` for a paid session of `user` buying `pack`
/// (`amount` in euro cents), with its payment intent named after the session.
pub fn paid_session_event(event_id: &str, session: &str, user: &str, pack: &str, amount: i64) -> String {
    serde_json::json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "data": {"object": {
            "id": session, "object": "checkout.session", "client_reference_id": user,
            "payment_status": "paid", "status": "complete", "amount_total": amount, "currency": "eur",
            "metadata": {"pack_id": pack}, "payment_intent": format!("pi_for_{session}"),
        }},
    })
    .to_string()
}

/// Posts `body` to the app's `/webhooks/stripe` with `signature`, as Stripe delivers.
pub async fn post_event(app: &crate::TestApp, body: &str, signature: Option<String>) -> StatusCode {
    post_event_to(&app.base_url, body, signature).await
}

/// `post_event` to the app at `base_url` (for a task that does not hold the app).
pub async fn post_event_to(base_url: &str, body: &str, signature: Option<String>) -> StatusCode {
    let mut request = reqwest::Client::new()
        .post(format!("{base_url}/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.expect("POST").status()
}
