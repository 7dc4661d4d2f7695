//! Buying a pack: `POST /v1/checkout` against a fake Stripe (what it sends, its
//! `Idempotency-Key` semantics), and the reconciliation that applies a paid session
//! whose event never arrived and reports balances that drifted from their ledger.

use std::time::Duration;

use petportrait_core::time::now_ms;
use petportrait_tests::fake_stripe::{FakeStripe, paid_session_event, post_event, signature};
use petportrait_tests::{Client, Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "whsec_petportrait_checkout";
const HOUR_MS: i64 = 3_600_000;
const NO_SCHEDULER: petportrait::Roles = petportrait::Roles { web: true, worker: true, scheduler: false };

async fn spawn(mode: Mode, stripe: &FakeStripe) -> TestApp {
    let settings = [
        ("CREDIT_PACKS", "mini:5:199:eur,maxi:50:1499:eur"),
        ("STRIPE_SECRET_KEY", "sk_test_checkout"),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_API_BASE", &stripe.base_url),
    ];
    TestApp::spawn_with(mode, &settings, NO_SCHEDULER, None).await
}

/// What `POST /v1/checkout` answered: status, `Retry-After`, `Idempotent-Replayed`, body.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    replayed: bool,
    body: Value,
}

async fn checkout(buyer: &Client, key: Option<&str>, pack: &str) -> Answer {
    let mut request = buyer.http.post(buyer.url("/v1/checkout")).json(&json!({"pack_id": pack}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("POST");
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
    let (retry_after, replayed) = (header("retry-after"), header("idempotent-replayed").as_deref() == Some("true"));
    let status = response.status();
    Answer { status, retry_after, replayed, body: response.json().await.expect("JSON") }
}

async fn tick(app: &TestApp, at: i64) -> petportrait_scheduler::TickReport {
    petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", at).await.expect("tick")
}

all_modes!(checkout_opens_a_stripe_session_and_records_nothing, checkout_opens_a_stripe_session_and_records_nothing);

async fn checkout_opens_a_stripe_session_and_records_nothing(mode: Mode) {
    let stripe = FakeStripe::start().await;
    let app = spawn(mode, &stripe).await;
    let buyer = app.user("Checkout").await;
    let user = buyer.user_id().await;

    let first = checkout(&buyer, Some("buy-1"), "mini").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let session = first.body["session_id"].as_str().expect("session").to_owned();
    assert_eq!(first.body["checkout_url"], format!("https://checkout.stripe.com/c/pay/{session}"));
    let sent = stripe.requests().pop().expect("a request");
    let form = |k: &str| sent.form.get(k).cloned().unwrap_or_default();
    assert_eq!(form("mode"), "payment");
    assert_eq!(form("client_reference_id"), user);
    assert_eq!(form("metadata[pack_id]"), "mini");
    assert_eq!(form("line_items[0][price_data][unit_amount]"), "199");
    assert_eq!(form("line_items[0][price_data][currency]"), "eur");
    assert!(form("success_url").contains("{CHECKOUT_SESSION_ID}"));
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sk_test_checkout"));
    assert!(sent.stripe_version.is_some(), "no pinned Stripe-Version");
    assert!(sent.idempotency_key.is_some(), "no idempotency key sent to Stripe");

    let unknown = checkout(&buyer, None, "giant").await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_pack"))
    );

    // Stripe down: 503 with Retry-After, and nothing recorded as paid.
    stripe.fail(true);
    let down = checkout(&buyer, None, "mini").await;
    assert_eq!(
        (down.status, down.body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("payment_provider_unavailable"))
    );
    assert!(down.retry_after.is_some(), "no Retry-After");
    assert_eq!(buyer.get("/v1/credits").await.1["balance"], 10, "credits before any payment");
    assert_eq!(buyer.get("/v1/payments").await.1["data"], json!([]));
    app.stop().await;
}

all_modes!(a_checkout_key_replays_conflicts_and_waits, a_checkout_key_replays_conflicts_and_waits);

/// `Idempotency-Key` on `POST /v1/checkout`, as on generations: the same key and body
/// replay the first answer (Stripe is not asked again); another body is a 422; a key
/// whose first request is still at Stripe is a 409; keys are per user; a failed call
/// frees its key; after 24 hours the scheduler forgets it.
async fn a_checkout_key_replays_conflicts_and_waits(mode: Mode) {
    let stripe = FakeStripe::start().await;
    let app = spawn(mode, &stripe).await;
    let buyer = app.user("Idempotent").await;

    let first = checkout(&buyer, Some("buy-1"), "mini").await;
    assert_eq!((first.status, first.replayed), (StatusCode::CREATED, false), "{}", first.body);
    let again = checkout(&buyer, Some("buy-1"), "mini").await;
    assert_eq!((again.status, again.replayed), (StatusCode::CREATED, true));
    assert_eq!(again.body, first.body, "the replay is not the first answer");
    assert_eq!(stripe.requests().len(), 1, "Stripe was asked again for a replay");

    let other_body = checkout(&buyer, Some("buy-1"), "maxi").await;
    assert_eq!(
        (other_body.status, other_body.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_conflict"))
    );
    // Keys are per user: another user's "buy-1" is a request of its own.
    let neighbour = app.user("Neighbour").await;
    let theirs = checkout(&neighbour, Some("buy-1"), "mini").await;
    assert_eq!((theirs.status, theirs.replayed), (StatusCode::CREATED, false));
    assert_ne!(theirs.body["session_id"], first.body["session_id"]);

    // While the first request with a key is at Stripe, a second one is told so.
    let held = stripe.hold().await;
    let second = async {
        wait_until("the first request to reach Stripe", Duration::from_secs(10), || async {
            (stripe.requests().len() == 3).then_some(())
        })
        .await;
        let meanwhile = checkout(&buyer, Some("buy-2"), "maxi").await;
        drop(held);
        meanwhile
    };
    let (slow, meanwhile) = tokio::join!(checkout(&buyer, Some("buy-2"), "maxi"), second);
    assert_eq!(
        (meanwhile.status, meanwhile.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_in_progress"))
    );
    assert_eq!(slow.status, StatusCode::CREATED);
    assert_eq!(checkout(&buyer, Some("buy-2"), "maxi").await.body, slow.body);

    // A call Stripe failed opened nothing: the key is free for the retry.
    stripe.fail(true);
    assert_eq!(checkout(&buyer, Some("buy-3"), "mini").await.status, StatusCode::SERVICE_UNAVAILABLE);
    stripe.fail(false);
    let retried = checkout(&buyer, Some("buy-3"), "mini").await;
    assert_eq!((retried.status, retried.replayed), (StatusCode::CREATED, false));

    // Kept for 24 hours, then purged: the key may then name a new request.
    assert_eq!(tick(&app, now_ms() + 23 * HOUR_MS).await.checkout_keys_deleted, 0);
    assert_eq!(tick(&app, now_ms() + 25 * HOUR_MS).await.checkout_keys_deleted, 4);
    let reused = checkout(&buyer, Some("buy-1"), "maxi").await;
    assert_eq!((reused.status, reused.replayed), (StatusCode::CREATED, false), "{}", reused.body);
    app.stop().await;
}

all_modes!(
    reconciliation_applies_paid_sessions_and_reports_drift,
    reconciliation_applies_paid_sessions_and_reports_drift
);

/// The daily reconciliation: paid sessions whose event never arrived are applied once
/// (through every page of Stripe's list), a late event then grants nothing more, and a
/// balance that no longer matches its ledger is reported (not corrected). It runs once
/// per interval, and an hour after a run Stripe failed.
async fn reconciliation_applies_paid_sessions_and_reports_drift(mode: Mode) {
    let stripe = FakeStripe::start().await;
    let app = spawn(mode, &stripe).await;
    let buyer = app.user("Reconciled").await;
    let user = buyer.user_id().await;
    let balance = || async { buyer.get("/v1/credits").await.1["balance"].as_i64().expect("balance") };
    let mut sessions = Vec::new();
    for key in ["a", "b", "c", "d"] {
        let answer = checkout(&buyer, Some(key), "mini").await;
        assert_eq!(answer.status, StatusCode::CREATED);
        sessions.push(answer.body["session_id"].as_str().expect("session").to_owned());
    }
    // a: paid and its event delivered; b and c: paid, their events lost; d: never paid.
    for session in &sessions[..3] {
        stripe.mark_paid(session);
    }
    let paid_event = |event: &str, session: &str| paid_session_event(event, session, &user, "mini", 199);
    let deliver = |body: String| {
        let app = &app;
        async move { post_event(app, &body, Some(signature(&body, WEBHOOK_SECRET, now_ms() / 1000))).await }
    };
    assert_eq!(deliver(paid_event("evt_a", &sessions[0])).await, StatusCode::OK);
    assert_eq!(balance().await, 15);

    let start = now_ms();
    let report = tick(&app, start).await.reconciliation.expect("the first tick reconciles");
    assert_eq!(
        (report.users_checked, report.balance_differences, report.sessions_checked, report.sessions_applied),
        (1, 0, 3, 2),
        "{report:?}"
    );
    assert_eq!(report.stripe_error, None);
    assert!(stripe.list_calls() >= 2, "Stripe's list was not paged through");
    assert_eq!(balance().await, 25, "b and c were not applied once each");
    assert_eq!(buyer.get("/v1/payments").await.1["data"].as_array().map(Vec::len), Some(3));
    // b's event arrives after all: nothing more is granted.
    assert_eq!(deliver(paid_event("evt_b", &sessions[1])).await, StatusCode::OK);
    assert_eq!(balance().await, 25);

    // Not due again within the interval; the next run finds nothing new.
    assert_eq!(tick(&app, start + HOUR_MS).await.reconciliation, None);
    let next = tick(&app, start + 24 * HOUR_MS).await.reconciliation.expect("due after a day");
    assert_eq!((next.sessions_checked, next.sessions_applied, next.balance_differences), (3, 0, 0));
    assert_eq!(app.services.db.latest_reconciliation().await.expect("read"), Some(next));

    // A balance changed behind the ledger's back is reported and left for an operator.
    app.raw_execute("UPDATE users SET credits_balance = credits_balance + 7 WHERE id = $1", &[user.as_str()]).await;
    stripe.fail(true);
    let drifted = tick(&app, start + 48 * HOUR_MS).await.reconciliation.expect("due");
    assert_eq!(drifted.balance_differences, 1);
    assert!(drifted.stripe_error.is_some(), "a failed listing is not reported");
    assert_eq!(balance().await, 32, "the reconciliation corrected a balance instead of reporting it");
    // Stripe failed: tried again an hour later rather than a day.
    stripe.fail(false);
    assert_eq!(tick(&app, start + 48 * HOUR_MS + HOUR_MS / 2).await.reconciliation, None);
    let retried = tick(&app, start + 49 * HOUR_MS).await.reconciliation.expect("retried after an hour");
    assert_eq!(retried.stripe_error, None);
    app.stop().await;
}
