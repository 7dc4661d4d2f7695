//! Expiry: the scheduler purges expired uploads and outputs (objects and rows),
//! downloads then answer 410, and ticks are single-flight across schedulers.

use std::time::Duration;

use petportrait_core::time::now_ms;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;

/// The test drives the scheduler's ticks itself, with a clock it moves.
const NO_SCHEDULER: petportrait::Roles = petportrait::Roles { web: true, worker: true, scheduler: false };

all_modes!(expired_outputs_are_purged_and_gone, expired_outputs_are_purged_and_gone);
all_modes!(one_scheduler_runs_each_tick, one_scheduler_runs_each_tick);

async fn expired_outputs_are_purged_and_gone(mode: Mode) {
    // Outputs live a day; the purge batch is tiny so the purge takes several batches.
    let overrides = [("OUTPUT_TTL", "1d"), ("UPLOAD_TTL", "2d"), ("PURGE_BATCH", "1"), ("STARTER_CREDITS", "20")];
    let app = TestApp::spawn_with(mode, &overrides, NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut files = Vec::new();
    for style in ["watercolor", "pencil_sketch"] {
        let id = ann.create_portrait(&upload, style).await["id"].as_str().expect("id").to_owned();
        let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded");
        files.push(done["outputs"][0]["url"].as_str().expect("url").to_owned());
    }
    for file in &files {
        assert_eq!(ann.download(file).await.0, StatusCode::OK);
    }
    let (_, me) = ann.get("/v1/me").await;
    let user_prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    assert_eq!(app.services.store.list(&user_prefix).await.expect("list").len(), 3, "one upload and two outputs");

    // Before expiry nothing is purged.
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", now_ms()).await.expect("tick");
    assert_eq!((report.ran, report.objects_purged), (true, 0));

    // Thirty hours later the outputs have expired, the upload not yet.
    let later = now_ms() + 30 * 3_600_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", later).await.expect("tick");
    assert_eq!(report.objects_purged, 2);
    let left = app.services.store.list(&user_prefix).await.expect("list");
    assert_eq!(left.len(), 1, "only the upload is left: {left:?}");
    assert!(left[0].contains("/uploads/"));
    for file in &files {
        let (status, body) = ann.get(file).await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        assert_eq!(body["code"], "gone");
    }
    // The generation still describes its outputs, without a download link.
    let (_, history) = ann.get("/v1/generations").await;
    assert!(history["data"][0]["outputs"][0]["url"].is_null());

    // Three days later the upload goes too; a second purge finds nothing to do.
    let much_later = now_ms() + 72 * 3_600_000;
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", much_later).await.expect("tick");
    assert_eq!(report.objects_purged, 1);
    assert!(app.services.store.list(&user_prefix).await.expect("list").is_empty());
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", much_later + 1).await.expect("tick");
    assert_eq!(report.objects_purged, 0);
    app.stop().await;
}

async fn one_scheduler_runs_each_tick(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[("SCHEDULER_TICK", "10s")], NO_SCHEDULER, None).await;
    let now = now_ms();
    let (a, b) = tokio::join!(
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-a", now),
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-b", now),
    );
    let ran = [a.expect("tick a").ran, b.expect("tick b").ran];
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "exactly one of two schedulers runs a tick: {ran:?}");
    // Within the lease the loser keeps losing; after it lapses the next tick is anyone's.
    let again =
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-c", now + 5_000).await.expect("tick");
    assert!(!again.ran);
    let next =
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-c", now + 10_000).await.expect("tick");
    assert!(next.ran);
    app.stop().await;
}

all_modes!(expired_uploads_are_gone, expired_uploads_are_gone);

async fn expired_uploads_are_gone(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[("UPLOAD_TTL", "1s")], NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let path = format!("/v1/uploads/{upload}");
    let body = petportrait_tests::wait_until("the upload to expire", Duration::from_secs(10), || async {
        let (status, body) = ann.get(&path).await;
        (status == StatusCode::GONE).then_some(body)
    })
    .await;
    assert_eq!(body["code"], "gone");
    let (status, body) = ann
        .post_json(
            "/v1/generations",
            &serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("upload_expired")), "{body}");
    assert_eq!(ann.available_credits().await, 10, "nothing was held");
    app.stop().await;
}
