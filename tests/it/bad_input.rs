//! Every way a request can be wrong answers a clear problem+json, never a 500.

use std::time::{Duration, Instant};

use image::ImageFormat;
use petportrait_tests::fixtures::{chelsea_jpeg, encode, pet_jpeg, pet_photo, png_bomb};
use petportrait_tests::{Client, Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(unauthenticated, unauthenticated);
all_modes!(wrong_method, wrong_method);
all_modes!(body_not_multipart, body_not_multipart);
all_modes!(text_named_jpeg, text_named_jpeg);
all_modes!(png_bomb_refused_from_header, png_bomb_refused_from_header);
all_modes!(truncated_image, truncated_image);
all_modes!(polyglot_image, polyglot_image);
all_modes!(corrupt_image, corrupt_image);
all_modes!(too_wide_image, too_wide_image);
all_modes!(unsupported_image_format, unsupported_image_format);
all_modes!(empty_upload, empty_upload);
all_modes!(motion_photo_accepted, motion_photo_accepted);
all_modes!(upload_too_large, upload_too_large);
all_modes!(decode_over_the_memory_budget, decode_over_the_memory_budget);
all_modes!(unknown_kind, unknown_kind);
all_modes!(unknown_style, unknown_style);
all_modes!(upload_not_found, upload_not_found);
all_modes!(invalid_body, invalid_body);
all_modes!(insufficient_credits, insufficient_credits);
all_modes!(cross_site_write, cross_site_write);
all_modes!(unknown_route, unknown_route);
all_modes!(isolation_between_users, isolation_between_users);
all_modes!(idempotency_key, idempotency_key);

fn assert_problem(status: StatusCode, body: &serde_json::Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(), "{body}");
}

/// The app every rejection scenario runs against, with Ann signed in: 5 credits cover
/// one watercolor (4) but not a second, and uploads stop at 2 MB.
async fn start(mode: Mode) -> (TestApp, Client) {
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "5"), ("UPLOAD_MAX_BYTES", "2000000")]).await;
    let ann = app.user("Ann").await;
    (app, ann)
}

/// Asserts that a response is the problem `expected` / `code`.
async fn assert_problem_response(response: reqwest::Response, expected: StatusCode, code: &str) {
    let status = response.status();
    assert_problem(status, &response.json().await.expect("json"), expected, code);
}

/// A refused upload leaves nothing behind: the user's prefix holds no object.
async fn assert_nothing_stored(app: &TestApp, user: &Client) {
    let (_, me) = user.get("/v1/me").await;
    let prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    assert!(app.services.store.list(&prefix).await.expect("list").is_empty(), "a refused upload was stored");
}

/// Uploads a bad image declared `image/jpeg`, whatever it really is, and expects its
/// own status and code, with nothing stored.
async fn image_refused(mode: Mode, bytes: Vec<u8>, name: &str, expected: StatusCode, code: &str) {
    let (app, ann) = start(mode).await;
    assert_problem_response(ann.upload(bytes, name, "image/jpeg").await, expected, code).await;
    assert_nothing_stored(&app, &ann).await;
    app.stop().await;
}

/// Posts a generation body that names no valid kind, style or upload (`body` gets the id
/// of a real upload of the user's) and expects 422 with `code`.
async fn generation_refused(mode: Mode, body: impl FnOnce(&str) -> serde_json::Value, code: &str) {
    let (app, ann) = start(mode).await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let (status, problem) = ann.post_json("/v1/generations", &body(&upload)).await;
    assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY, code);
    app.stop().await;
}

/// Without a session, every API route answers 401 as problem+json.
async fn unauthenticated(mode: Mode) {
    let (app, _ann) = start(mode).await;
    let anonymous = reqwest::Client::new();
    for path in ["/v1/me", "/v1/styles", "/v1/generations"] {
        let response = anonymous.get(format!("{}{path}", app.base_url)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    app.stop().await;
}

async fn wrong_method(mode: Mode) {
    let (app, ann) = start(mode).await;
    let response = ann.http.delete(ann.url("/v1/generations")).send().await.expect("delete");
    assert_problem_response(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    app.stop().await;
}

async fn body_not_multipart(mode: Mode) {
    let (app, ann) = start(mode).await;
    let response = ann.http.post(ann.url("/v1/uploads")).body("plain").send().await.expect("post");
    assert_problem_response(response, StatusCode::BAD_REQUEST, "invalid_multipart").await;
    app.stop().await;
}

/// A text file named .jpg and declared image/jpeg is sniffed and refused.
async fn text_named_jpeg(mode: Mode) {
    let (app, ann) = start(mode).await;
    let response = ann.upload(b"this is not a photo, just text".to_vec(), "cat.jpg", "image/jpeg").await;
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_problem_response(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    assert_nothing_stored(&app, &ann).await;
    app.stop().await;
}

/// A 20000x20000 PNG bomb is refused from its header: quickly, without decoding.
async fn png_bomb_refused_from_header(mode: Mode) {
    let (app, ann) = start(mode).await;
    let bomb = png_bomb();
    let peak_before = peak_rss_kb();
    let started = Instant::now();
    let response = ann.upload(bomb, "bomb.png", "image/png").await;
    let elapsed = started.elapsed();
    assert_problem_response(response, StatusCode::UNPROCESSABLE_ENTITY, "image_too_large").await;
    assert!(elapsed < Duration::from_secs(2), "the bomb took {elapsed:?} to refuse");
    // Decoding it would need 400 MB; the process's peak memory grows far less than that.
    let grown_kb = peak_rss_kb().saturating_sub(peak_before);
    eprintln!("png bomb refused in {elapsed:?}; peak RSS grew by {grown_kb} kB");
    assert!(grown_kb < 100_000, "peak RSS grew by {grown_kb} kB: the bomb was decoded");
    assert_nothing_stored(&app, &ann).await;
    app.stop().await;
}

/// The first half of a real JPEG.
async fn truncated_image(mode: Mode) {
    let jpeg = chelsea_jpeg();
    let truncated = jpeg[..jpeg.len() / 2].to_vec();
    image_refused(mode, truncated, "cut.jpg", StatusCode::UNPROCESSABLE_ENTITY, "image_truncated").await;
}

/// A JPEG that is also a ZIP archive: the archive follows the image's end marker.
async fn polyglot_image(mode: Mode) {
    let mut polyglot = chelsea_jpeg();
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00payload.html<html><script>steal()</script>");
    image_refused(mode, polyglot, "cat.jpg", StatusCode::UNPROCESSABLE_ENTITY, "image_polyglot").await;
}

/// A PNG whose compressed pixel data is damaged (its CRC no longer matches).
async fn corrupt_image(mode: Mode) {
    let mut corrupt = encode(&pet_photo(), ImageFormat::Png);
    let idat = corrupt.windows(4).position(|w| w == b"IDAT").expect("an IDAT chunk");
    for byte in &mut corrupt[idat + 20..idat + 60] {
        *byte ^= 0x5A;
    }
    image_refused(mode, corrupt, "broken.png", StatusCode::UNPROCESSABLE_ENTITY, "image_corrupt").await;
}

/// 13000 pixels wide: over the 12000 a side, though only 13000 pixels in all.
async fn too_wide_image(mode: Mode) {
    let too_wide = encode(&image::RgbImage::new(13_000, 1), ImageFormat::Png);
    image_refused(mode, too_wide, "wide.png", StatusCode::UNPROCESSABLE_ENTITY, "image_too_large").await;
}

/// A real image in a format the service does not take (a 1x1 GIF).
async fn unsupported_image_format(mode: Mode) {
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    image_refused(mode, gif, "cat.gif", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

async fn empty_upload(mode: Mode) {
    image_refused(mode, Vec::new(), "empty.jpg", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

/// The positive control of the image checks: a phone's motion photo (the picture, then
/// its MP4 video) is not a polyglot. It is accepted, and only the picture is kept.
async fn motion_photo_accepted(mode: Mode) {
    let (app, ann) = start(mode).await;
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
    let (_, me) = ann.get("/v1/me").await;
    let prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    let stored = app.services.store.list(&prefix).await.expect("list");
    assert_eq!(stored.len(), 1);
    let kept = app.services.store.get(&stored[0]).await.expect("get").expect("the object");
    assert_eq!(upload["bytes"].as_u64(), Some(kept.len() as u64), "{upload}");
    // The picture's own segments at most (its metadata is stripped too), not the video.
    assert!(kept.len() <= photo.len(), "the video was not stored");
    assert!(!kept.windows(4).any(|w| w == b"ftyp"), "the video was not stored");
    let decoded = |bytes: &[u8]| image::load_from_memory(bytes).expect("decodes").to_rgb8();
    assert!(decoded(&kept) == decoded(&photo), "the picture is stored pixel for pixel");
    app.stop().await;
}

/// A small file whose decode needs more than the process's whole memory budget: a
/// 4,000 x 4,000 WebP (decoded whole: 64 MB of pixels and the decoder's planes) against
/// a 40 MB budget. Refused before anything is allocated, nothing stored.
async fn decode_over_the_memory_budget(mode: Mode) {
    let overrides = [("UPLOAD_MAX_BYTES", "2000000"), ("MEMORY_BUDGET", "40000000")];
    let app = TestApp::spawn(mode, &overrides).await;
    let ann = app.user("Ann").await;
    let flat = image::RgbImage::from_pixel(4_000, 4_000, image::Rgb([200, 120, 60]));
    let webp = petportrait_tests::fixtures::encode(&flat, image::ImageFormat::WebP);
    assert!(webp.len() < 100_000, "a few KB on disk: {}", webp.len());
    let response = ann.upload(webp, "flat.webp", "image/webp").await;
    assert_problem_response(response, StatusCode::UNPROCESSABLE_ENTITY, "image_too_large").await;
    assert_nothing_stored(&app, &ann).await;
    // The budget is whole again: an ordinary photo goes through.
    ann.upload_ok(chelsea_jpeg()).await;
    assert_eq!(app.services.memory.available_bytes(), app.services.memory.total_bytes());
    app.stop().await;
}

/// A body over the 2 MB upload limit.
async fn upload_too_large(mode: Mode) {
    let (app, ann) = start(mode).await;
    let response = ann.upload(vec![0u8; 3_000_000], "huge.jpg", "image/jpeg").await;
    assert_problem_response(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    app.stop().await;
}

async fn unknown_kind(mode: Mode) {
    generation_refused(mode, |upload| json!({"kind": "video", "upload_id": upload, "style": "x"}), "unknown_kind")
        .await;
}

async fn unknown_style(mode: Mode) {
    let body = |upload: &str| json!({"kind": "portrait", "upload_id": upload, "style": "cubism"});
    generation_refused(mode, body, "unknown_style").await;
}

async fn upload_not_found(mode: Mode) {
    let body = |_: &str| json!({"kind": "portrait", "upload_id": "upl_nope", "style": "watercolor"});
    generation_refused(mode, body, "upload_not_found").await;
}

async fn invalid_body(mode: Mode) {
    generation_refused(mode, |_| json!({"kind": 3}), "invalid_body").await;
}

/// 5 credits cover one watercolor (4), not a second.
async fn insufficient_credits(mode: Mode) {
    let (app, ann) = start(mode).await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    ann.create_portrait(&upload, "watercolor").await;
    let (status, body) = ann
        .post_json("/v1/generations", &json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}))
        .await;
    assert_problem(status, &body, StatusCode::PAYMENT_REQUIRED, "insufficient_credits");
    assert_eq!(ann.available_credits().await, 1, "only the first generation's cost was held or charged");
    app.stop().await;
}

/// A cookie-authenticated write that a browser marks cross-site is refused.
async fn cross_site_write(mode: Mode) {
    let (app, ann) = start(mode).await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let response = ann
        .http
        .post(ann.url("/v1/generations"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}))
        .send()
        .await
        .expect("post");
    assert_problem_response(response, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // On its own the write could afford a watercolor, so the refusal must also have
    // held nothing.
    assert_eq!(ann.available_credits().await, 5, "the refused write held credits");
    app.stop().await;
}

/// Unknown routes answer problem+json too.
async fn unknown_route(mode: Mode) {
    let (app, ann) = start(mode).await;
    let (status, body) = ann.get("/v1/nothing-here").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
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
