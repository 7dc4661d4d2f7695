//! Paying for credits: the packs for sale, Stripe's events applied once, refunds,
//! operator adjustments and the ledger under concurrent load. (Checkout: `checkout.rs`.)

use petportrait_tests::fake_stripe::{post_event, signature as stripe_signature};
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(the_packs_for_sale_are_listed_once_purchases_are_on, the_packs_for_sale_are_listed_once_purchases_are_on);

async fn the_packs_for_sale_are_listed_once_purchases_are_on(mode: Mode) {
    let off = TestApp::spawn(mode, &[]).await;
    let (status, credits) = off.user("Browser").await.get("/v1/credits").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(credits["packs"], json!([]), "packs offered with purchases off");
    off.stop().await;

    let on = TestApp::spawn(
        mode,
        &[
            ("CREDIT_PACKS", "mini:5:199:EUR,maxi:50:1499:eur"),
            ("STRIPE_SECRET_KEY", "sk_test_packs"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_packs"),
        ],
    )
    .await;
    let (_, credits) = on.user("Buyer").await.get("/v1/credits").await;
    assert_eq!(
        credits,
        json!({"balance": 10, "held": 0, "packs": [
            {"id": "mini", "credits": 5, "price": 199, "currency": "eur"},
            {"id": "maxi", "credits": 50, "price": 1499, "currency": "eur"},
        ]})
    );
    on.stop().await;
}

all_modes!(stripe_events_grant_each_purchase_once, stripe_events_grant_each_purchase_once);

pub const WEBHOOK_SECRET: &str = "whsec_petportrait_tests";

fn session_event(event_id: &str, kind: &str, session: &str, user: &str, paid: bool, amount: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {"object": {
            "id": session,
            "object": "checkout.session",
            "client_reference_id": user,
            "metadata": {"pack_id": "mini"},
            "amount_total": amount,
            "currency": "eur",
            "payment_status": if paid { "paid" } else { "unpaid" },
            "payment_intent": "pi_test_1",
        }},
    })
    .to_string()
}

async fn stripe_events_grant_each_purchase_once(mode: Mode) {
    let app = TestApp::spawn(
        mode,
        &[
            ("CREDIT_PACKS", "mini:5:199:eur"),
            ("STRIPE_SECRET_KEY", "sk_test_events"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;
    let buyer = app.user("Payer").await;
    let user = buyer.user_id().await;
    let now = petportrait_core::time::now_ms() / 1000;
    let signed = |body: &str| Some(stripe_signature(body, WEBHOOK_SECRET, now));
    let balance = || async { buyer.get("/v1/credits").await.1["balance"].as_i64().expect("balance") };
    assert_eq!(balance().await, 10);

    // Forged, stale and unsigned events are refused and grant nothing.
    let paid = session_event("evt_paid_1", "checkout.session.completed", "cs_test_1", &user, true, 199);
    let forged = Some(stripe_signature(&paid, "whsec_somebody_else", now));
    let stale = Some(stripe_signature(&paid, WEBHOOK_SECRET, now - 600));
    for (signature, what) in [(forged, "forged"), (stale, "stale"), (None, "unsigned")] {
        assert_eq!(post_event(&app, &paid, signature).await, StatusCode::BAD_REQUEST, "{what}");
    }
    let tampered = paid.replace("\"amount_total\":199", "\"amount_total\":1");
    assert_eq!(
        post_event(&app, &tampered, signed(&paid)).await,
        StatusCode::BAD_REQUEST,
        "a body changed after signing"
    );
    assert_eq!(balance().await, 10);
    // A body over the route's limit is refused as a problem, before any signature check.
    let huge = reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", app.base_url))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .expect("POST");
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.headers()["content-type"], "application/problem+json");
    assert_eq!(huge.json::<serde_json::Value>().await.expect("a problem")["code"], "payload_too_large");

    // The same event ten times at once, then again: one grant.
    let copies = (0..10).map(|_| post_event(&app, &paid, signed(&paid)));
    for status in futures::future::join_all(copies).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(post_event(&app, &paid, signed(&paid)).await, StatusCode::OK);
    assert_eq!(balance().await, 15);
    let ledger = buyer.ledger().await;
    assert_eq!(ledger.iter().filter(|e| e["kind"] == "purchase").count(), 1, "{ledger:?}");

    // An unpaid completion grants nothing; its async success grants once, even if a
    // second event for the same session follows.
    let unpaid = session_event("evt_unpaid_2", "checkout.session.completed", "cs_test_2", &user, false, 199);
    assert_eq!(post_event(&app, &unpaid, signed(&unpaid)).await, StatusCode::OK);
    assert_eq!(balance().await, 15);
    let succeeded =
        session_event("evt_async_2", "checkout.session.async_payment_succeeded", "cs_test_2", &user, true, 199);
    assert_eq!(post_event(&app, &succeeded, signed(&succeeded)).await, StatusCode::OK);
    let late = session_event("evt_late_2", "checkout.session.completed", "cs_test_2", &user, true, 199);
    assert_eq!(post_event(&app, &late, signed(&late)).await, StatusCode::OK);
    assert_eq!(balance().await, 20);

    // What was paid decides: a session paid at another amount grants nothing.
    let cheap = session_event("evt_cheap_3", "checkout.session.completed", "cs_test_3", &user, true, 1);
    assert_eq!(post_event(&app, &cheap, signed(&cheap)).await, StatusCode::OK);
    assert_eq!(balance().await, 20);
    // Types we do not handle are acknowledged.
    let other = json!({"id": "evt_other", "type": "customer.created", "data": {"object": {}}}).to_string();
    assert_eq!(post_event(&app, &other, signed(&other)).await, StatusCode::OK);

    // The payment records: two purchases, no card data.
    let (status, payments) = buyer.get("/v1/payments").await;
    assert_eq!(status, StatusCode::OK);
    let data = payments["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{payments}");
    assert!(data.iter().all(|p| p["amount"] == 199 && p["currency"] == "eur" && p["status"] == "paid"));
    app.stop().await;
}

all_modes!(a_refund_takes_the_credits_back_as_far_as_it_can, a_refund_takes_the_credits_back_as_far_as_it_can);

fn refund_event(event_id: &str, intent: &str, refunded: i64) -> String {
    json!({
        "id": event_id,
        "type": "charge.refunded",
        "data": {"object": {"id": "ch_test", "object": "charge", "payment_intent": intent,
                            "amount": 1000, "amount_refunded": refunded, "currency": "eur", "refunded": refunded >= 1000}},
    })
    .to_string()
}

async fn a_refund_takes_the_credits_back_as_far_as_it_can(mode: Mode) {
    let app = TestApp::spawn(
        mode,
        &[
            ("CREDIT_PACKS", "big:40:1000:eur"),
            ("STARTER_CREDITS", "0"),
            ("STRIPE_SECRET_KEY", "sk_test_refunds"),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;
    let buyer = app.user("Refunded").await;
    let user = buyer.user_id().await;
    let now = petportrait_core::time::now_ms() / 1000;
    let send = |body: String| {
        let signature = Some(stripe_signature(&body, WEBHOOK_SECRET, now));
        let app = &app;
        async move { post_event(app, &body, signature).await }
    };
    let paid = json!({
        "id": "evt_buy", "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_refund", "client_reference_id": user, "metadata": {"pack_id": "big"},
                            "amount_total": 1000, "currency": "eur", "payment_status": "paid", "payment_intent": "pi_refund"}},
    })
    .to_string();
    assert_eq!(send(paid).await, StatusCode::OK);
    let balance = || async { buyer.get("/v1/credits").await.1["balance"].as_i64().expect("balance") };
    assert_eq!(balance().await, 40);

    // Half refunded: 20 credits back; the same event again changes nothing.
    assert_eq!(send(refund_event("evt_refund_1", "pi_refund", 500)).await, StatusCode::OK);
    assert_eq!(send(refund_event("evt_refund_1", "pi_refund", 500)).await, StatusCode::OK);
    assert_eq!(balance().await, 20);

    // 15 credits are spent (the balance is lowered behind the app's back to stand for
    // them), then the rest is refunded: 5 credits can be taken back, 15 cannot.
    let user_id = petportrait_core::ids::UserId::from_db(user.clone());
    app.raw_execute("UPDATE users SET credits_balance = credits_balance - 15 WHERE id = $1", &[user_id.as_str()]).await;
    assert_eq!(send(refund_event("evt_refund_2", "pi_refund", 1000)).await, StatusCode::OK);
    assert_eq!(balance().await, 0, "the balance went negative or kept refunded credits");
    let (_, payments) = buyer.get("/v1/payments").await;
    assert_eq!(payments["data"][0]["status"], "refunded");
    let ledger = buyer.ledger().await;
    let taken: Vec<i64> =
        ledger.iter().filter(|e| e["kind"] == "purchase").map(|e| e["amount"].as_i64().expect("amount")).collect();
    let mut sorted = taken.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [-20, -5, 40], "{ledger:?}");
    app.stop().await;
}

all_modes!(an_operator_grants_and_revokes_credits_with_a_reason, an_operator_grants_and_revokes_credits_with_a_reason);

/// `petportrait credits grant|revoke` goes through `Db::adjust_credits`.
async fn an_operator_grants_and_revokes_credits_with_a_reason(mode: Mode) {
    use petportrait_core::db::Adjustment;
    let app = TestApp::spawn(mode, &[]).await;
    let client = app.user("Adjusted").await;
    let user = petportrait_core::ids::UserId::from_db(client.user_id().await);
    let db = &app.services.db;
    let now = petportrait_core::time::now_ms();
    assert_eq!(
        db.adjust_credits(&user, 5, "support: failed upload", now).await.expect("grant"),
        Adjustment::Applied { balance: 15, held: 0 }
    );
    assert_eq!(db.adjust_credits(&user, -16, "too much", now).await.expect("revoke"), Adjustment::Insufficient);
    assert_eq!(
        db.adjust_credits(&user, -3, "support: duplicate grant", now).await.expect("revoke"),
        Adjustment::Applied { balance: 12, held: 0 }
    );
    let stranger = petportrait_core::ids::UserId::generate();
    assert_eq!(db.adjust_credits(&stranger, 1, "nobody", now).await.expect("grant"), Adjustment::NoSuchUser);
    let ledger = client.ledger().await;
    let grants: Vec<i64> =
        ledger.iter().filter(|e| e["kind"] == "grant").map(|e| e["amount"].as_i64().expect("amount")).collect();
    assert_eq!(grants.iter().sum::<i64>(), 12, "{ledger:?}");
    assert_eq!(client.get("/v1/credits").await.1["balance"], 12);
    app.stop().await;
}

all_modes!(concurrent_requests_and_cancels_never_overdraw, concurrent_requests_and_cancels_never_overdraw);

/// 40 generation requests at once against one account that can afford 5 of them, each
/// canceled as soon as it exists, with the workers running: never overdrawn, and
/// afterwards the balance is what the ledger adds up to and no generation was charged
/// twice.
async fn concurrent_requests_and_cancels_never_overdraw(mode: Mode) {
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "20")]).await;
    let client = app.user("Stressed").await;
    let upload = client.upload_ok(petportrait_tests::fixtures::pet_jpeg()).await;
    let create_and_cancel = |_| {
        let (client, upload) = (&client, upload.clone());
        async move {
            let body = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"});
            let (status, created) = client.post_json("/v1/generations", &body).await;
            match status {
                StatusCode::ACCEPTED => {
                    let id = created["id"].as_str().expect("id").to_owned();
                    let (status, _) = client.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
                    assert!(status.is_success() || status == StatusCode::CONFLICT, "cancel: {status}");
                    Some(id)
                }
                StatusCode::PAYMENT_REQUIRED => None,
                other => panic!("create answered {other}: {created}"),
            }
        }
    };
    let created: Vec<String> =
        futures::future::join_all((0..40).map(create_and_cancel)).await.into_iter().flatten().collect();
    assert!(!created.is_empty() && created.len() <= 40);
    eprintln!("{} of 40 requests were accepted", created.len());
    for id in &created {
        client.wait_terminal(id, std::time::Duration::from_secs(60)).await;
    }

    let (_, credits) = client.get("/v1/credits").await;
    let (balance, held) = (credits["balance"].as_i64().expect("balance"), credits["held"].as_i64().expect("held"));
    assert!(balance >= 0 && held == 0, "balance {balance}, held {held} after everything ended");
    // Every page of the ledger: with cancels releasing holds, more than 100 entries can exist.
    let mut ledger = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = client.get(&format!("/v1/credits/ledger?limit=100&cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK);
        ledger.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let sum = |kind: &str| {
        ledger.iter().filter(|e| e["kind"] == kind).map(|e| e["amount"].as_i64().expect("amount")).sum::<i64>()
    };
    assert_eq!(
        balance,
        sum("grant") + sum("purchase") - sum("charge") + sum("refund"),
        "the balance drifted: {ledger:?}"
    );
    assert_eq!(sum("hold"), sum("charge") + sum("release"), "a hold was neither charged nor released");
    for id in &created {
        let charges = ledger.iter().filter(|e| e["kind"] == "charge" && e["generation_id"] == id.as_str()).count();
        assert!(charges <= 1, "{id} charged {charges} times");
    }
    app.stop().await;
}
