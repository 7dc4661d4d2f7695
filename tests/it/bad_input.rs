//! Every way a request can be wrong answers a clear problem+json, never a 500.

use std::time::{Duration, Instant};

use image::ImageFormat;
use petportrait_tests::fixtures::{chelsea_jpeg, encode, pet_jpeg, pet_photo, png_bomb};
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

both_modes!(rejections, rejections);
both_modes!(isolation_between_users, isolation_between_users);
both_modes!(idempotency_key, idempotency_key);

fn assert_problem(status: StatusCode, body: &serde_json::Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(), "{body}");
}

async fn rejections(mode: Mode) {
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "5"), ("UPLOAD_MAX_BYTES", "2000000")]).await;
    let ann = app.user("Ann").await;

    // Unauthenticated, a wrong method, a body that is not multipart.
    let anonymous = reqwest::Client::new();
    for path in ["/v1/me", "/v1/styles", "/v1/generations"] {
        let response = anonymous.get(format!("{}{path}", app.base_url)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    let response = ann.http.delete(ann.url("/v1/generations")).send().await.expect("delete");
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let response = ann.http.post(ann.url("/v1/uploads")).body("plain").send().await.expect("post");
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), StatusCode::BAD_REQUEST, "invalid_multipart");

    // A text file named .jpg and declared image/jpeg is sniffed and refused.
    let response = ann.upload(b"this is not a photo, just text".to_vec(), "cat.jpg", "image/jpeg").await;
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_problem(
        status,
        &response.json().await.expect("json"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // A 20000x20000 PNG bomb is refused from its header: quickly, without decoding.
    let bomb = png_bomb();
    let peak_before = peak_rss_kb();
    let started = Instant::now();
    let response = ann.upload(bomb, "bomb.png", "image/png").await;
    let elapsed = started.elapsed();
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), StatusCode::UNPROCESSABLE_ENTITY, "image_too_large");
    assert!(elapsed < Duration::from_secs(2), "the bomb took {elapsed:?} to refuse");
    // Decoding it would need 400 MB; the process's peak memory grows far less than that.
    let grown_kb = peak_rss_kb().saturating_sub(peak_before);
    eprintln!("png bomb refused in {elapsed:?}; peak RSS grew by {grown_kb} kB");
    assert!(grown_kb < 100_000, "peak RSS grew by {grown_kb} kB: the bomb was decoded");

    // Each other class of bad image has its own code.
    for (bytes, name, status, code) in bad_images() {
        let response = ann.upload(bytes, name, "image/jpeg").await;
        let got = response.status();
        assert_problem(got, &response.json().await.expect("json"), status, code);
    }
    // None of them was stored: the user's prefix holds no object.
    let (_, me) = ann.get("/v1/me").await;
    let prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    assert!(app.services.store.list(&prefix).await.expect("list").is_empty());

    // A phone's motion photo (the picture, then its MP4 video) is not a polyglot: it is
    // accepted, and only the picture is kept.
    let photo = chelsea_jpeg();
    let mut motion_photo = photo.clone();
    for (kind, body) in [(b"ftyp", b"mp42isom".to_vec()), (b"mdat", vec![9u8; 4000])] {
        motion_photo.extend_from_slice(&(body.len() as u32 + 8).to_be_bytes());
        motion_photo.extend_from_slice(kind);
        motion_photo.extend_from_slice(&body);
    }
    let response = ann.upload(motion_photo, "PXL_motion.jpg", "image/jpeg").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let upload: serde_json::Value = response.json().await.expect("json");
    assert_eq!(upload["bytes"].as_u64(), Some(photo.len() as u64), "{upload}");
    let stored = app.services.store.list(&prefix).await.expect("list");
    assert_eq!(stored.len(), 1);
    let kept = app.services.store.get(&stored[0]).await.expect("get").expect("the object");
    assert_eq!(kept.as_ref(), photo.as_slice(), "the video was not stored");

    // Too large a body.
    let response = ann.upload(vec![0u8; 3_000_000], "huge.jpg", "image/jpeg").await;
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Bodies that name no valid kind, style or upload.
    let upload = ann.upload_ok(pet_jpeg()).await;
    let cases = [
        (json!({"kind": "video", "upload_id": upload, "style": "x"}), "unknown_kind"),
        (json!({"kind": "portrait", "upload_id": upload, "style": "cubism"}), "unknown_style"),
        (json!({"kind": "portrait", "upload_id": "upl_nope", "style": "watercolor"}), "upload_not_found"),
        (json!({"kind": 3}), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, problem) = ann.post_json("/v1/generations", &body).await;
        assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, code);
    }

    // Insufficient credits: 5 credits cover one watercolor (4), not a second.
    ann.create_portrait(&upload, "watercolor").await;
    let (status, body) = ann
        .post_json("/v1/generations", &json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}))
        .await;
    assert_problem(status, &body, StatusCode::PAYMENT_REQUIRED, "insufficient_credits");
    assert_eq!(ann.available_credits().await, 1, "only the first generation's cost was held or charged");

    // A cookie-authenticated write that a browser marks cross-site is refused.
    let response = ann
        .http
        .post(ann.url("/v1/generations"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}))
        .send()
        .await
        .expect("post");
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), StatusCode::FORBIDDEN, "csrf_rejected");

    // Unknown routes answer problem+json too.
    let (status, body) = ann.get("/v1/nothing-here").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
}

/// Uploads that must be refused, other than text and the bomb: the body, its name, and
/// the answer's status and code.
fn bad_images() -> Vec<(Vec<u8>, &'static str, StatusCode, &'static str)> {
    let jpeg = chelsea_jpeg();
    let truncated = jpeg[..jpeg.len() / 2].to_vec();
    // A JPEG that is also a ZIP archive: the archive follows the image's end marker.
    let mut polyglot = jpeg.clone();
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00payload.html<html><script>steal()</script>");
    // A PNG whose compressed pixel data is damaged (its CRC no longer matches).
    let mut corrupt = encode(&pet_photo(), ImageFormat::Png);
    let idat = corrupt.windows(4).position(|w| w == b"IDAT").expect("an IDAT chunk");
    for byte in &mut corrupt[idat + 20..idat + 60] {
        *byte ^= 0x5A;
    }
    // 13000 pixels wide: over the 12000 a side, though only 13000 pixels in all.
    let too_wide = encode(&image::RgbImage::new(13_000, 1), ImageFormat::Png);
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    vec![
        (truncated, "cut.jpg", StatusCode::UNPROCESSABLE_ENTITY, "image_truncated"),
        (polyglot, "cat.jpg", StatusCode::UNPROCESSABLE_ENTITY, "image_polyglot"),
        (corrupt, "broken.png", StatusCode::UNPROCESSABLE_ENTITY, "image_corrupt"),
        (too_wide, "wide.png", StatusCode::UNPROCESSABLE_ENTITY, "image_too_large"),
        (gif, "cat.gif", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (Vec::new(), "empty.jpg", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    ]
}

/// Peak resident memory of this test process (each nextest test is its own process).
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn isolation_between_users(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let generation = ann.create_portrait(&upload, "pencil_sketch").await;
    let id = generation["id"].as_str().expect("id");
    let done = ann.wait_terminal(id, Duration::from_secs(60)).await;
    let file = done["outputs"][0]["url"].as_str().expect("url").to_owned();

    for path in [format!("/v1/generations/{id}"), format!("/v1/uploads/{upload}"), file.clone()] {
        let (status, body) = bob.get(&path).await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    // Bob cannot use Ann's upload either.
    let (status, body) = bob
        .post_json("/v1/generations", &json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}))
        .await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "upload_not_found");
    let (_, history) = bob.get("/v1/generations").await;
    assert_eq!(history["data"].as_array().map(Vec::len), Some(0));
    assert_eq!(ann.download(&file).await.0, StatusCode::OK);
    app.stop().await;
}

async fn idempotency_key(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let body = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"});
    let send = |body: serde_json::Value| {
        let request = ann.http.post(ann.url("/v1/generations")).header("idempotency-key", "order-1").json(&body);
        async move {
            let response = request.send().await.expect("post");
            let status = response.status();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            (status, replayed, response.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (status, replayed, first) = send(body.clone()).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false));
    let (status, replayed, second) = send(body.clone()).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true));
    assert_eq!(first["id"], second["id"], "the same key and body replay the first generation");
    let (status, _, conflict) = send(json!({"kind": "portrait", "upload_id": upload, "style": "pop_art"})).await;
    assert_problem(status, &conflict, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict");
    assert_eq!(ann.available_credits().await, 6, "held once");
    app.stop().await;
}
