//! Paying for credits: the packs for sale. (Checkout and Stripe's events come next.)

use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

both_modes!(the_packs_for_sale_are_listed_once_purchases_are_on, the_packs_for_sale_are_listed_once_purchases_are_on);

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
