//! The happy path: sign in, upload, create a portrait, poll, download.

use std::time::Duration;

use petportrait_tests::fixtures::{mean_abs_diff, pet_jpeg, pet_photo};
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

all_modes!(portrait_end_to_end, portrait_end_to_end);
all_modes!(polling_and_history, polling_and_history);
all_modes!(uploads_are_never_served_back, uploads_are_never_served_back);

async fn portrait_end_to_end(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let (status, ready) = ann.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let models = serde_json::json!({"portrait": true, "music": true, "sculpture": true});
    assert_eq!(ready, serde_json::json!({"database": true, "queue": true, "object_store": true, "models": models}));
    assert_eq!(ann.download("/healthz").await.0, StatusCode::OK);

    let (status, me) = ann.get("/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["credits"], serde_json::json!({"balance": 10, "held": 0}));

    let upload = ann.upload_ok(pet_jpeg()).await;
    let (status, up) = ann.get(&format!("/v1/uploads/{upload}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (up["width"].as_i64(), up["height"].as_i64(), up["content_type"].as_str()),
        (Some(320), Some(240), Some("image/jpeg"))
    );

    let created = ann.create_portrait(&upload, "watercolor").await;
    assert_eq!(created["status"], "queued");
    assert_eq!(created["cost"], serde_json::json!({"credits": 4, "charged": 0, "refunded": 0}));
    assert!(created["queue_position"].as_i64().is_some_and(|p| p >= 1));
    assert_eq!(ann.available_credits().await, 6, "the cost is held (or already charged) at creation");

    let id = created["id"].as_str().expect("id");
    let done = ann.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"]["percent"], 100);
    assert_eq!(done["cost"]["charged"], 4);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
    let outputs = done["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["content_type"], "image/jpeg");

    let (status, bytes) = ann.download(outputs[0]["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.len() as i64, outputs[0]["bytes"].as_i64().expect("bytes"));
    let portrait = image::load_from_memory(&bytes).expect("the output decodes").to_rgb8();
    assert_eq!(portrait.dimensions(), (320, 240));
    let difference = mean_abs_diff(&portrait, &pet_photo());
    assert!(difference > 10.0, "the portrait must visibly differ from the photo (mean difference {difference:.1})");

    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], serde_json::json!({"balance": 6, "held": 0}));

    // The queue keeps no finished job once vacuumed; the generation is unaffected.
    wait_until("the finished job to be vacuumed", Duration::from_secs(10), || async {
        let removed = app.services.queue.vacuum(Duration::ZERO).await.expect("vacuum");
        (removed > 0).then_some(())
    })
    .await;
    assert_eq!(ann.get(&format!("/v1/generations/{id}")).await.1["status"], "succeeded");
    let ledger = ann.ledger().await;
    let kinds: Vec<&str> = ledger.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["charge", "hold", "grant"]);
    app.stop().await;
}

async fn polling_and_history(mode: Mode) {
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "100")]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut ids = Vec::new();
    for style in ["watercolor", "pencil_sketch", "pop_art"] {
        ids.push(ann.create_portrait(&upload, style).await["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        assert_eq!(ann.wait_terminal(id, Duration::from_secs(60)).await["status"], "succeeded");
    }

    // ETag / If-None-Match: an unchanged generation answers 304 without a body.
    let response = ann.http.get(ann.url(&format!("/v1/generations/{}", ids[0]))).send().await.expect("get");
    let etag = response.headers()["etag"].clone();
    assert!(response.headers().get("retry-after").is_none(), "terminal generations carry no poll hint");
    let again = ann
        .http
        .get(ann.url(&format!("/v1/generations/{}", ids[0])))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("get");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // History: newest first, paginated with a cursor.
    let (status, page) = ann.get("/v1/generations?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let first: Vec<&str> = page["data"].as_array().expect("data").iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, page) = ann.get(&format!("/v1/generations?limit=2&cursor={cursor}")).await;
    let second: Vec<&str> = page["data"].as_array().expect("data").iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(second, [ids[0].as_str()]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, filtered) = ann.get("/v1/generations?status=failed").await;
    assert_eq!(filtered["data"].as_array().map(Vec::len), Some(0));
    let (status, _) = ann.get("/v1/generations?status=exploded").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The catalogue lists the styles with their costs.
    let (_, styles) = ann.get("/v1/styles").await;
    let portrait = &styles["kinds"][0];
    assert_eq!(portrait["kind"], "portrait");
    assert!(portrait["styles"].as_array().expect("styles").len() >= 3);
    app.stop().await;
}

/// A photo may carry its owner's location and camera: it is used to generate, never
/// handed back, even to its owner who learns its object id.
async fn uploads_are_never_served_back(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let row = app.services.db.get_upload(&upload).await.expect("read").expect("the upload");
    let (status, _) = ann.download(&format!("/v1/files/{}", row.object_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
