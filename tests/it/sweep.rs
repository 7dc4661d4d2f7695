//! The database is the system of record: a generation whose job the queue lost is
//! dispatched again by the scheduler, and one that merely waits in a backlog is not.

use std::time::Duration;

use petportrait_core::time::now_ms;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};

all_modes!(lost_jobs_are_dispatched_again, lost_jobs_are_dispatched_again);
all_modes!(a_backlog_is_not_dispatched_twice, a_backlog_is_not_dispatched_twice);

const STALLED_AFTER_MS: i64 = 300_000;

async fn lost_jobs_are_dispatched_again(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &[("STALLED_AFTER", "5m")], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let (_, me) = ann.get("/v1/me").await;
    let user = petportrait_core::ids::UserId::from_db(me["id"].as_str().expect("user id").to_owned());

    // A generation whose row was written but whose job never reached the queue.
    let id = app.create_unqueued_generation(&user, &upload).await;

    // Before STALLED_AFTER nothing happens; after it the sweep finds and dispatches it.
    let early = petportrait_scheduler::tick(&app.config, &app.services, "sweeper", now_ms()).await.expect("tick");
    assert_eq!(early.generations_redispatched, 0);
    let later = now_ms() + STALLED_AFTER_MS + 1_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "sweeper", later).await.expect("tick");
    assert_eq!(report.generations_redispatched, 1);
    let done = ann.wait_terminal(id.as_str(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ann.available_credits().await, 6);
    app.stop().await;
}

async fn a_backlog_is_not_dispatched_twice(mode: Mode) {
    // No worker: the job waits in the queue like the tail of a long backlog.
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[("STALLED_AFTER", "5m")], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    ann.create_portrait(&upload, "watercolor").await;
    let later = now_ms() + STALLED_AFTER_MS + 1_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "sweeper", later).await.expect("tick");
    assert_eq!(report.generations_redispatched, 0, "the queue still holds the job");
    app.stop().await;
}
