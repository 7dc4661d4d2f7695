//! A worker killed mid-job: the generation still completes, once, charged once.

use std::time::Duration;

use petportrait_core::ids::GenerationId;
use petportrait_core::queue::Dispatch;
use petportrait_core::time::now_ms;
use petportrait_studio::LocalStudio;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::StallingStudio;
use petportrait_tests::{DetachedWorker, Mode, TestApp, wait_until};

all_modes!(killed_worker_job_completes_once, killed_worker_job_completes_once);
all_modes!(a_lease_about_to_lapse_is_waited_out, a_lease_about_to_lapse_is_waited_out);

async fn killed_worker_job_completes_once(mode: Mode) {
    // The app serves the API and the scheduler; workers run in runtimes of their own.
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;

    let (stalling, release) = StallingStudio::new();
    let doomed = DetachedWorker::start(app.config.clone(), stalling);
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/generations/{id}");
    wait_until("the first worker to start rendering", Duration::from_secs(30), || async {
        let (_, body) = ann.get(&path).await;
        (body["status"] == "processing").then_some(())
    })
    .await;

    // kill -9: the runtime vanishes with the job in flight (no ack, no lease renewal).
    doomed.kill();
    drop(release);

    let survivor =
        DetachedWorker::start(app.config.clone(), std::sync::Arc::new(LocalStudio::new(app.config.uploads.clone())));
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outputs"].as_array().map(Vec::len), Some(1));
    let charges = ann.ledger().await.iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 1, "charged exactly once");
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], serde_json::json!({"balance": 6, "held": 0}));
    let row = app
        .services
        .db
        .get_generation(&GenerationId::parse(&id).expect("generation id"))
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.attempts, 2, "the killed attempt and the one that finished");
    survivor.kill();
    app.stop().await;
}

/// The queue hands a dead worker's job over when its queue lease lapses, which is often
/// a few milliseconds before the generation's own lease does (found by `bench/faults`,
/// kill-worker). That delivery must take the generation over itself rather than push a
/// look-again job, which would wait behind the whole backlog.
async fn a_lease_about_to_lapse_is_waited_out(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let (_, me) = ann.get("/v1/me").await;
    let user = petportrait_core::ids::UserId::from_db(me["id"].as_str().expect("user id").to_owned());
    let id = app.create_unqueued_generation(&user, &upload).await;

    // A dead worker's lease with less than a heartbeat (1 s in tests) left, then the
    // queue's hand-over of its job.
    let until = now_ms() + 300;
    app.raw_execute(
        &format!(
            "UPDATE generations SET status = 'processing', attempts = 1, lease_owner = 'dead-worker/1', \
             lease_until = {until} WHERE id = $1"
        ),
        &[id.as_str()],
    )
    .await;
    app.services.queue.dispatch(&Dispatch::LookAgain.plan(&id), Duration::ZERO).await.expect("dispatch");

    let done = ann.wait_terminal(id.as_str(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let counts = wait_until("the delivery to be recorded", Duration::from_secs(30), || async {
        let counts = app.services.queue.counts().await.expect("queue counts");
        (counts.ready + counts.delayed + counts.active == 0 && counts.done >= 1).then_some(counts)
    })
    .await;
    assert_eq!(counts.done, 1, "one delivery, no look-again job: {counts:?}");
    let row = app.services.db.get_generation(&id).await.expect("read").expect("row");
    assert_eq!(row.attempts, 2, "the dead worker's attempt and the one that finished");
    app.stop().await;
}
