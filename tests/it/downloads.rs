//! `GET /v1/files/{id}`: the bytes with `ETag` and `Range` (embedded mode's way, and
//! the default), or a 302 to a presigned link on `S3_PUBLIC_ENDPOINT`, verified by an
//! S3 server that checks the signature (s3s), never made for an expired file.

use petportrait_core::config::Secret;
use petportrait_core::storage::EmbeddedS3;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Client, Mode, TestApp};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_RANGE, ETAG, IF_NONE_MATCH, IF_RANGE, LOCATION, RANGE,
};
use std::time::Duration;

/// A finished portrait's download path.
async fn portrait_file(ann: &Client) -> String {
    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let done = ann.wait_terminal(created["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done["outputs"][0]["url"].as_str().expect("a url").to_owned()
}

all_modes!(files_are_served_with_etag_and_ranges, files_are_served_with_etag_and_ranges);

async fn files_are_served_with_etag_and_ranges(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Downloader").await;
    let path = portrait_file(&ann).await;
    let get = |headers: &[(reqwest::header::HeaderName, String)]| {
        let mut request = ann.http.get(ann.url(&path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { request.send().await.expect("GET") }
    };
    let header = |r: &reqwest::Response, name| r.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());

    let whole = get(&[]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let etag = header(&whole, ETAG).expect("an ETag");
    assert_eq!(header(&whole, ACCEPT_RANGES).as_deref(), Some("bytes"));
    assert_eq!(
        header(&whole, CONTENT_DISPOSITION).as_deref(),
        Some("attachment; filename=\"portrait-watercolor.jpg\"")
    );
    let bytes = whole.bytes().await.expect("body").to_vec();
    let size = bytes.len();
    assert!(size > 100);

    let unchanged = get(&[(IF_NONE_MATCH, etag.clone())]).await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let head = get(&[(RANGE, "bytes=0-9".into())]).await;
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&head, CONTENT_RANGE), Some(format!("bytes 0-9/{size}")));
    assert_eq!(head.bytes().await.expect("body").to_vec(), bytes[..10]);
    let tail = get(&[(RANGE, "bytes=-16".into()), (IF_RANGE, etag.clone())]).await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.expect("body").to_vec(), bytes[size - 16..]);
    let resumed = get(&[(RANGE, format!("bytes={}-", size / 2))]).await;
    assert_eq!(resumed.bytes().await.expect("body").to_vec(), bytes[size / 2..]);

    let past_the_end = get(&[(RANGE, format!("bytes={size}-"))]).await;
    assert_eq!(past_the_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&past_the_end, CONTENT_RANGE), Some(format!("bytes */{size}")));
    // A client whose copy is another version asks with If-Range: it gets the whole file.
    let stale = get(&[(RANGE, "bytes=0-9".into()), (IF_RANGE, "\"obj_other\"".into())]).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.expect("body").len(), size);
    app.stop().await;
}

all_modes!(downloads_redirect_to_a_short_lived_link, downloads_redirect_to_a_short_lived_link);

/// With `S3_PUBLIC_ENDPOINT`, the API answers 302 to a presigned GET that the S3
/// server (s3s, which checks SigV4) accepts without our cookie; an expired file is 410.
async fn downloads_redirect_to_a_short_lived_link(mode: Mode) {
    let root = std::env::temp_dir().join(format!("pp-s3-{}", ulid::Ulid::generate()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let s3 = EmbeddedS3::start(&root, listener, "test-access".into(), Secret::new("test-secret-key-0123456789"))
        .expect("an S3 server");
    let endpoint = s3.endpoint();
    let app = TestApp::spawn(
        mode,
        &[
            ("S3_ENDPOINT", &endpoint),
            ("S3_PUBLIC_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", "test-access"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key-0123456789"),
        ],
    )
    .await;
    let ann = app.user("Linked").await;
    let path = portrait_file(&ann).await;
    let answer = ann.http.get(ann.url(&path)).send().await.expect("GET");
    // `ann.http` follows redirects: it ends at the bytes, fetched from S3 directly.
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.url().as_str().starts_with(&endpoint), "not served from S3: {}", answer.url());
    assert_eq!(
        answer.headers().get(CONTENT_DISPOSITION).map(|v| v.to_str().expect("ascii").to_owned()).as_deref(),
        Some("attachment; filename=\"portrait-watercolor.jpg\"")
    );
    assert_eq!(&answer.bytes().await.expect("bytes")[..3], &[0xff, 0xd8, 0xff], "not the JPEG");

    // The link itself: short-lived, and good without any cookie.
    let cookie_less = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let redirect = ann_redirect(&ann, &path).await;
    assert!(redirect.contains("X-Amz-Expires=300"), "{redirect}");
    assert_eq!(cookie_less.get(&redirect).send().await.expect("GET").status(), StatusCode::OK);
    let tampered = redirect.replace("X-Amz-Expires=300", "X-Amz-Expires=86400");
    assert_eq!(cookie_less.get(&tampered).send().await.expect("GET").status(), StatusCode::FORBIDDEN);

    // Expired: 410, and no link is made.
    let object = path.rsplit('/').next().expect("id").to_owned();
    app.raw_execute("UPDATE stored_objects SET expires_at = 1 WHERE id = $1", &[object.as_str()]).await;
    let gone = ann.http.get(ann.url(&path)).send().await.expect("GET");
    assert_eq!(gone.status(), StatusCode::GONE);
    app.stop().await;
    s3.stop().await;
    let _ = std::fs::remove_dir_all(root);
}

/// The `Location` the API answers for `path`, not followed.
async fn ann_redirect(ann: &Client, path: &str) -> String {
    let cookie = ann.cookie_header();
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(ann.url(path))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers().get(reqwest::header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"private, no-store"[..])
    );
    response.headers().get(LOCATION).expect("a Location").to_str().expect("ascii").to_owned()
}
