//! The gallery: saved outputs outlive the output expiry and stay until deleted.

use petportrait_core::time::now_ms;
use petportrait_tests::fixtures::chelsea_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use std::time::Duration;

all_modes!(saved_items_outlive_output_expiry, saved_items_outlive_output_expiry);
all_modes!(only_succeeded_generations_can_be_saved, only_succeeded_generations_can_be_saved);
all_modes!(saving_while_the_purge_deletes_the_output_is_gone, saving_while_the_purge_deletes_the_output_is_gone);

const HOUR_MS: i64 = 3_600_000;

async fn saved_items_outlive_output_expiry(mode: Mode) {
    // The test drives the scheduler's ticks with a clock it moves.
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let overrides = [("OUTPUT_TTL", "1d"), ("UPLOAD_TTL", "2d"), ("STARTER_CREDITS", "20")];
    let app = TestApp::spawn_with(mode, &overrides, roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(chelsea_jpeg()).await;
    let id = ann.create_portrait(&upload, "pop_art").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let output = &done["outputs"][0];
    let (status, output_bytes) = ann.download(output["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);

    // Saving copies the output into an item of its own.
    let (status, saved) = ann.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let items = saved["data"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{saved}");
    let item = &items[0];
    assert!(item["id"].as_str().expect("item id").starts_with("gal_"));
    assert_eq!(item["generation_id"], id.as_str());
    assert_eq!((item["kind"].as_str(), item["style"].as_str()), (Some("portrait"), Some("pop_art")));
    assert_eq!(item["filename"], output["filename"]);
    assert_eq!(item["content_type"], output["content_type"]);
    assert_eq!(item["bytes"], output["bytes"]);
    let item_url = item["url"].as_str().expect("item url").to_owned();
    assert_ne!(item_url, output["url"].as_str().expect("url"), "the item is a copy, not the output");
    assert_eq!(ann.download(&item_url).await, (StatusCode::OK, output_bytes.clone()));

    // Saving again keeps one item per output.
    let (status, again) = ann.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["data"][0]["id"], item["id"]);
    let (status, gallery) = ann.get("/v1/gallery").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gallery["data"].as_array().map(Vec::len), Some(1), "{gallery}");
    assert_eq!(gallery["data"][0]["id"], item["id"]);
    assert!(gallery["next_cursor"].is_null());

    // Another user sees none of it.
    let bob = app.user("Bob").await;
    let (_, bobs) = bob.get("/v1/gallery").await;
    assert_eq!(bobs["data"].as_array().map(Vec::len), Some(0));
    let (status, _) = bob.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(bob.download(&item_url).await.0, StatusCode::NOT_FOUND);
    let item_path = format!("/v1/gallery/{}", item["id"].as_str().expect("id"));
    assert_eq!(bob.http.delete(bob.url(&item_path)).send().await.expect("delete").status(), StatusCode::NOT_FOUND);

    // Thirty hours later the output has been purged; the saved copy has not.
    let (_, me) = ann.get("/v1/me").await;
    let prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    let tick = |at: i64| petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", at);
    let report = tick(now_ms() + 30 * HOUR_MS).await.expect("tick");
    assert_eq!(report.objects_purged, 1, "only the output expires after a day");
    assert_eq!(ann.download(output["url"].as_str().expect("url")).await.0, StatusCode::GONE);
    assert_eq!(ann.download(&item_url).await, (StatusCode::OK, output_bytes.clone()));
    let (status, late) = ann.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "the item saved before expiry is still answered: {late}");
    assert_eq!(late["data"][0]["id"], item["id"]);

    // Three days later the upload is gone too; the item is still there.
    let report = tick(now_ms() + 72 * HOUR_MS).await.expect("tick");
    assert_eq!(report.objects_purged, 1, "the upload");
    assert_eq!(ann.download(&item_url).await.0, StatusCode::OK);
    let left = app.services.store.list(&prefix).await.expect("list");
    assert!(left.len() == 1 && left[0].contains("/gallery/"), "{left:?}");

    // Deleting the item stops serving it at once; the purge then deletes the copy.
    let response = ann.http.delete(ann.url(&item_path)).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(ann.download(&item_url).await.0, StatusCode::GONE);
    let (_, gallery) = ann.get("/v1/gallery").await;
    assert_eq!(gallery["data"].as_array().map(Vec::len), Some(0));
    assert_eq!(ann.http.delete(ann.url(&item_path)).send().await.expect("delete").status(), StatusCode::NOT_FOUND);
    let report = tick(now_ms() + 73 * HOUR_MS).await.expect("tick");
    assert_eq!(report.objects_purged, 1, "the deleted item's copy");
    assert!(app.services.store.list(&prefix).await.expect("list").is_empty());
    app.stop().await;
}

async fn only_succeeded_generations_can_be_saved(mode: Mode) {
    // Without a worker the generation stays queued.
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[("STARTER_CREDITS", "20")], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(chelsea_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let (status, problem) = ann.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "not_succeeded");
    let (status, problem) =
        ann.post_json("/v1/generations/gen_00000000000000000000000000/save", &serde_json::json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (_, gallery) = ann.get("/v1/gallery").await;
    assert_eq!(gallery["data"].as_array().map(Vec::len), Some(0));
    app.stop().await;
}

/// The purge deletes an expired output's bytes before its row: a save that checked the
/// row a moment earlier finds no bytes to copy. That is the file having expired (410),
/// not a fault of ours (500).
async fn saving_while_the_purge_deletes_the_output_is_gone(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(chelsea_jpeg()).await;
    let id = ann.create_portrait(&upload, "pop_art").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let prefix = format!("u/{}/generated/", ann.user_id().await);
    let keys = app.services.store.list(&prefix).await.expect("list");
    assert_eq!(keys.len(), 1, "{keys:?}");
    // The purge's first step, caught between the save's check and its copy.
    app.services.store.delete_many(&keys).await.expect("delete");
    let (status, problem) = ann.post_json(&format!("/v1/generations/{id}/save"), &serde_json::json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::GONE, Some("gone")), "{problem}");
    let (_, gallery) = ann.get("/v1/gallery").await;
    assert_eq!(gallery["data"].as_array().map(Vec::len), Some(0), "{gallery}");
    app.stop().await;
}
