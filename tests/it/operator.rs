//! The operator's commands (`petportrait generation show|cancel`, `purge`, `sweep`),
//! through the functions the command line prints.

use std::time::Duration;

use petportrait::operator;
use petportrait_core::ids::UserId;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;

all_modes!(operators_show_and_cancel_a_generation, operators_show_and_cancel_a_generation);
all_modes!(operators_purge_and_sweep_now, operators_purge_and_sweep_now);

async fn operators_show_and_cancel_a_generation(mode: Mode) {
    // No worker: the generation waits, queued.
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let before = ann.available_credits().await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();

    let shown = operator::generation_show(&app.services, &id).await.expect("show");
    assert_eq!((shown["status"].as_str(), shown["kind"].as_str()), (Some("queued"), Some("portrait")), "{shown}");
    assert_eq!(shown["credits"]["cost"], 4);
    assert_eq!(shown["user_id"], ann.user_id().await.as_str());
    assert!(!shown.to_string().contains(&ann.email), "no address in the report");

    let canceled = operator::generation_cancel(&app.services, &id).await.expect("cancel");
    assert_eq!(canceled["result"], "canceled");
    assert_eq!(ann.available_credits().await, before, "the hold was released");
    let (status, seen) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!((status, seen["status"].as_str()), (StatusCode::OK, Some("canceled")));
    let again = operator::generation_cancel(&app.services, &id).await.expect("cancel again");
    assert_eq!(again["result"], "already_ended");

    let unknown = operator::generation_show(&app.services, "gen_01h0000000000000000000000a").await;
    assert!(unknown.expect_err("unknown").to_string().contains("no generation"));
    let malformed = operator::generation_show(&app.services, "usr_x").await;
    assert!(malformed.expect_err("malformed").to_string().contains("not a generation id"));
    app.stop().await;
}

async fn operators_purge_and_sweep_now(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &[("STALLED_AFTER", "1s")], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;

    // An expired upload is purged at once.
    let expiring = ann.upload_ok(pet_jpeg()).await;
    let (_, row) = ann.get(&format!("/v1/uploads/{expiring}")).await;
    app.raw_execute(
        "UPDATE stored_objects SET expires_at = 1 WHERE id = (SELECT object_id FROM uploads WHERE id = $1)",
        &[expiring.as_str()],
    )
    .await;
    let purged = operator::purge_now(&app.config, &app.services).await.expect("purge");
    assert_eq!(purged["objects_purged"], 1, "{purged} {row}");

    // A generation whose job never reached the queue is dispatched again once it has
    // been quiet for STALLED_AFTER, and then made.
    let user = UserId::from_db(ann.user_id().await);
    let id = app.create_unqueued_generation(&user, &upload).await;
    wait_until("the sweep to dispatch the lost generation", Duration::from_secs(15), || async {
        let swept = operator::sweep_now(&app.config, &app.services).await.expect("sweep");
        (swept["generations_redispatched"] == 1).then_some(())
    })
    .await;
    let done = ann.wait_terminal(id.as_str(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    app.stop().await;
}

all_modes!(migration_status_lists_every_migration, migration_status_lists_every_migration);

/// Every migration file of the dialect is listed, and applied once the app started.
async fn migration_status_lists_every_migration(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let states = app.services.db.migration_status().await.expect("status");
    let dialect = match mode {
        Mode::Embedded => "sqlite",
        Mode::Distributed | Mode::Cluster => "postgres",
    };
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(dialect);
    let files = std::fs::read_dir(folder).expect("the migrations").filter_map(Result::ok).count();
    assert_eq!(states.len(), files, "{states:?}");
    assert!(states.iter().all(|m| m.applied), "{states:?}");
    assert!(states.windows(2).all(|w| w[0].version < w[1].version), "oldest first");
    app.stop().await;
}
