//! Cancel: before the work starts the hold is released; while it runs the worker stops
//! and the charge is refunded; an ended generation answers 409.

use std::time::Duration;

use petportrait_core::db::ClaimOutcome;
use petportrait_core::ids::GenerationId;
use petportrait_core::time::now_ms;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::StallingStudio;
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::json;

both_modes!(cancel_before_start_releases_the_hold, cancel_before_start_releases_the_hold);
both_modes!(cancel_while_running_refunds_and_stays_canceled, cancel_while_running_refunds_and_stays_canceled);

async fn cancel_before_start_releases_the_hold(mode: Mode) {
    // No worker: the generation stays queued until it is canceled.
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/generations/{id}/cancel");

    let (status, body) = bob.post_json(&path, &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");

    let (status, body) = ann.post_json(&path, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["cost"], json!({"credits": 4, "charged": 0, "refunded": 0}));
    assert_eq!(ann.available_credits().await, 10);
    let kinds: Vec<String> = ann.ledger().await.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect();
    assert_eq!(kinds, ["release", "hold", "grant"]);

    let (status, body) = ann.post_json(&path, &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_completed")), "{body}");
    app.stop().await;
}

async fn cancel_while_running_refunds_and_stays_canceled(mode: Mode) {
    let (stalling, release) = StallingStudio::new();
    let app = TestApp::spawn_with(mode, &[], petportrait::Roles::ALL, Some(stalling)).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until("the render to start", Duration::from_secs(30), || async {
        let (_, body) = ann.get(&format!("/v1/generations/{id}")).await;
        (body["status"] == "processing" && body["cost"]["charged"] == 4).then_some(())
    })
    .await;

    let (status, body) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}));
    assert_eq!(ann.available_credits().await, 10);

    // The worker lost its lease: whatever its render does next cannot change the outcome.
    drop(release);
    let generation = GenerationId::parse(&id).expect("id");
    let db = &app.services.db;
    assert!(matches!(
        db.claim_generation(&generation, "late", now_ms(), now_ms() + 1_000).await.expect("claim"),
        ClaimOutcome::Terminal
    ));
    let (_, after) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!(after["status"], "canceled");
    assert_eq!(after["outputs"].as_array().map(Vec::len), Some(0));
    let kinds: Vec<String> = ann.ledger().await.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect();
    assert_eq!(kinds, ["refund", "charge", "hold", "grant"]);
    app.stop().await;
}
