//! The per-user cap on running generations (`USER_MAX_RUNNING`): one user's backlog
//! holds at most the cap's worth of workers; another user's generation takes a free
//! worker at once; the end of a run dispatches the user's next parked generation.

use std::time::Duration;

use petportrait_tests::client::Client;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::StallingStudio;
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(one_users_backlog_leaves_workers_for_others, one_users_backlog_leaves_workers_for_others);
all_modes!(parked_generations_go_back_once_the_cap_is_off, parked_generations_go_back_once_the_cap_is_off);

/// A generation parked under a cap that an operator then turned off is not stranded:
/// the sweep dispatches it.
async fn parked_generations_go_back_once_the_cap_is_off(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let app = TestApp::spawn_with(mode, &[("USER_MAX_RUNNING", "0")], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let user = petportrait_core::ids::UserId::from_db(ann.user_id().await);
    let id = app.create_unqueued_generation(&user, &upload).await;
    app.raw_execute("UPDATE generations SET parked_at = 1 WHERE id = $1", &[id.as_str()]).await;
    let swept = petportrait::operator::sweep_now(&app.config, &app.services).await.expect("sweep");
    assert_eq!(swept["parked_dispatched"], 1, "{swept}");
    let done = ann.wait_terminal(id.as_str(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    app.stop().await;
}

async fn statuses(client: &Client, ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for id in ids {
        let (status, body) = client.get(&format!("/v1/generations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        found.push(body["status"].as_str().expect("a status").to_owned());
    }
    found
}

fn running(statuses: &[String]) -> usize {
    statuses.iter().filter(|s| matches!(s.as_str(), "starting" | "processing")).count()
}

async fn one_users_backlog_leaves_workers_for_others(mode: Mode) {
    // Every render blocks until released: whatever starts, stays running.
    let (stalling, release) = StallingStudio::new();
    let vars = [("USER_MAX_RUNNING", "1"), ("WORKER_CONCURRENCY", "2"), ("STARTER_CREDITS", "100")];
    let app = TestApp::spawn_with(mode, &vars, petportrait::Roles::ALL, Some(stalling)).await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut anns = Vec::new();
    for _ in 0..3 {
        anns.push(ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned());
    }
    let deadline = Duration::from_secs(30);
    wait_until("one of Ann's generations to run", deadline, || async {
        (running(&statuses(&ann, &anns).await) == 1).then_some(())
    })
    .await;

    // Two workers, Ann may use one: Bob's generation starts while Ann's backlog waits.
    let bobs_upload = bob.upload_ok(pet_jpeg()).await;
    let bobs = bob.create_portrait(&bobs_upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until("Bob's generation to run", deadline, || async {
        (running(&statuses(&bob, std::slice::from_ref(&bobs)).await) == 1).then_some(())
    })
    .await;
    let now = statuses(&ann, &anns).await;
    assert_eq!(running(&now), 1, "Ann runs one at a time: {now:?}");
    assert_eq!(now.iter().filter(|s| *s == "queued").count(), 2, "{now:?}");

    // Ann's running generation ends (canceled, its render released): her next one starts.
    let first =
        anns.iter().zip(&now).find(|(_, s)| matches!(s.as_str(), "starting" | "processing")).expect("one runs").0;
    let (status, body) = ann.post_json(&format!("/v1/generations/{first}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The studio has one release queue for both blocked renders, and which of them holds
    // it depends on scheduling: release both, so Ann's first surely ends (Bob's is retried).
    release.send(()).expect("release a render");
    release.send(()).expect("release the other render");
    let rest: Vec<String> = anns.iter().filter(|id| *id != first).cloned().collect();
    wait_until("Ann's next generation to run", deadline, || async {
        (running(&statuses(&ann, &rest).await) == 1).then_some(())
    })
    .await;
    let now = statuses(&ann, &rest).await;
    assert_eq!(running(&now), 1, "still one at a time: {now:?}");

    for id in rest.iter().chain(std::iter::once(&bobs)) {
        let owner = if *id == bobs { &bob } else { &ann };
        owner.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    }
    for _ in 0..4 {
        let _ = release.send(());
    }
    app.stop().await;
}
