//! The operator's commands (`petportrait generation show|cancel|retry`, `users show`,
//! `purge`, `sweep`, `migrate --status`), through the functions the command line prints.

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

all_modes!(operators_retry_a_waiting_generation_now, operators_retry_a_waiting_generation_now);
all_modes!(operators_show_an_account_by_id_or_address, operators_show_an_account_by_id_or_address);

async fn operators_retry_a_waiting_generation_now(mode: Mode) {
    // The first render fails (retryable) and the retry would wait an hour.
    let flaky = petportrait_tests::studios::FlakyStudio::new(1);
    let vars = [("RETRY_BASE_DELAY", "1h"), ("RETRY_MAX_DELAY", "2h")];
    let app = TestApp::spawn_with(mode, &vars, petportrait::Roles::ALL, Some(flaky)).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until("the first attempt to fail", Duration::from_secs(30), || async {
        let shown = operator::generation_show(&app.services, &id).await.expect("show");
        (shown["status"] == "queued" && shown["attempts"] == 1).then_some(())
    })
    .await;

    let retried = operator::generation_retry(&app.services, &id).await.expect("retry");
    assert_eq!(retried["result"], "dispatched", "{retried}");
    let done = ann.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "retried at once, not in an hour: {done}");

    // An ended generation stays ended.
    let refused = operator::generation_retry(&app.services, &id).await.expect_err("ended");
    assert!(refused.to_string().contains("has ended"), "{refused}");
    app.stop().await;
}

async fn operators_show_an_account_by_id_or_address(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    ann.create_portrait(&upload, "watercolor").await;
    let id = ann.user_id().await;

    let by_id = operator::user_show(&app.services, &id, false).await.expect("by id");
    assert_eq!(by_id["id"], id.as_str());
    assert_eq!(by_id["generations"]["queued"], 1, "{by_id}");
    assert_eq!(by_id["credits"]["held"], 4, "{by_id}");
    assert_eq!(by_id["sessions"], 1, "{by_id}");
    assert!(!by_id.to_string().contains(&ann.email) && !by_id.to_string().contains("Ann"), "no personal data: {by_id}");

    // Found by the address's blind index, in any case.
    let by_address = operator::user_show(&app.services, &ann.email.to_uppercase(), true).await.expect("by address");
    assert_eq!(by_address["id"], id.as_str());
    assert_eq!((by_address["email"].as_str(), by_address["name"].as_str()), (Some(ann.email.as_str()), Some("Ann")));

    let nobody = operator::user_show(&app.services, "nobody@example.org", false).await.expect_err("unknown");
    assert!(nobody.to_string().contains("no account"), "{nobody}");
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
