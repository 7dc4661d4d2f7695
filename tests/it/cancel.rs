//! Cancel: before the work starts the hold is released; while it runs the worker stops
//! and the charge is refunded; an ended generation answers 409.

use std::time::Duration;

use petportrait_core::db::ClaimOutcome;
use petportrait_core::ids::GenerationId;
use petportrait_core::time::now_ms;
use petportrait_tests::fake_provider::{FakeProvider, Outcome, Script};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::{LateSuccessStudio, StallingStudio};
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(cancel_before_start_releases_the_hold, cancel_before_start_releases_the_hold);
all_modes!(cancel_while_running_refunds_and_stays_canceled, cancel_while_running_refunds_and_stays_canceled);
all_modes!(a_render_finishing_after_cancel_hands_out_no_file, a_render_finishing_after_cancel_hands_out_no_file);
all_modes!(
    a_prediction_succeeding_after_cancel_hands_out_no_file,
    a_prediction_succeeding_after_cancel_hands_out_no_file
);

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
    wait_until_charged_and_processing(&ann, &id).await;

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
        db.claim_generation(&generation, "late", now_ms(), now_ms() + 1_000, None).await.expect("claim"),
        ClaimOutcome::Terminal
    ));
    let (_, after) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!(after["status"], "canceled");
    assert_eq!(after["outputs"].as_array().map(Vec::len), Some(0));
    let kinds: Vec<String> = ann.ledger().await.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect();
    assert_eq!(kinds, ["refund", "charge", "hold", "grant"]);
    app.stop().await;
}

/// The render finishes after the cancel and its files are written, but they are never
/// listed or served, and the purge deletes them at its next tick.
async fn a_render_finishing_after_cancel_hands_out_no_file(mode: Mode) {
    let (studio, release) = LateSuccessStudio::new();
    // No scheduler role: this test runs the purge itself, when it chooses.
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, Some(studio)).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until_charged_and_processing(&ann, &id).await;
    let (status, body) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!((status, &body["status"]), (StatusCode::ACCEPTED, &json!("canceled")), "{body}");

    // The render succeeds now, and the worker writes its files.
    release.send(()).expect("release the render");
    let generated = format!("u/{}/generated/", ann.user_id().await);
    wait_until("the late render's file to be written", Duration::from_secs(30), || async {
        (!app.services.store.list(&generated).await.expect("list").is_empty()).then_some(())
    })
    .await;
    expect_canceled_without_files(&app, &ann, &id, &generated).await;
    app.stop().await;
}

/// A remote prediction that succeeds just after the generation is canceled: the same
/// promise as for the local studio, whichever of the cancel and the success the worker
/// sees first.
async fn a_prediction_succeeding_after_cancel_hands_out_no_file(mode: Mode) {
    // About 30 polls of 20 to 50 ms: the prediction succeeds some 1.6 s after its
    // create, reporting no progress on the way, so the worker learns of a cancel only
    // at its next heartbeat (every second from the render's start in the tests).
    let script = Script { polls: 30, outcome: Outcome::Succeed, quiet: true, ..Script::default() };
    let fake = FakeProvider::start(script).await;
    let env = fake.env();
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &overrides, roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    // Cancel shortly before the provider says `succeeded`, within a heartbeat of it.
    wait_until("the prediction to be nearly done", Duration::from_secs(30), || async {
        (fake.seen().polls >= 26).then_some(())
    })
    .await;
    let (status, body) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!((status, &body["status"]), (StatusCode::ACCEPTED, &json!("canceled")), "{body}");
    let generated = format!("u/{}/generated/", ann.user_id().await);
    expect_canceled_without_files(&app, &ann, &id, &generated).await;
    let seen = fake.seen();
    // Which came first is timing: a download means the success won and the files were
    // written before the worker saw the cancel; a cancel at the provider, the reverse.
    eprintln!(
        "outputs downloaded: {}, predictions canceled at the provider: {}, polls {}, predictions {}",
        seen.downloads,
        seen.cancels.len(),
        seen.polls,
        seen.predictions
    );
    app.stop().await;
}

/// Once the worker has let go of the job: the generation is canceled and refunded,
/// lists no output, and after a purge no generated object of the user is left.
async fn expect_canceled_without_files(
    app: &TestApp,
    ann: &petportrait_tests::client::Client,
    id: &str,
    generated: &str,
) {
    wait_until("the worker to let go of the job", Duration::from_secs(30), || async {
        let counts = app.services.queue.counts().await.expect("counts");
        (counts.ready == 0 && counts.delayed == 0 && counts.active == 0).then_some(())
    })
    .await;
    let (_, after) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!(after["status"], "canceled", "{after}");
    assert_eq!(after["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}), "{after}");
    assert_eq!(after["outputs"], json!([]), "{after}");
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", now_ms()).await.expect("tick");
    assert!(report.ran);
    let left = app.services.store.list(generated).await.expect("list");
    assert!(left.is_empty(), "a canceled generation's files are deleted: {left:?}");
}

/// Waits until the worker has charged the generation and its render runs.
async fn wait_until_charged_and_processing(ann: &petportrait_tests::client::Client, id: &str) {
    wait_until("the render to start", Duration::from_secs(30), || async {
        let (_, body) = ann.get(&format!("/v1/generations/{id}")).await;
        (body["status"] == "processing" && body["cost"]["charged"] == 4).then_some(())
    })
    .await;
}
