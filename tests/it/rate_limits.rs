//! Rate limits: per user on generations and uploads, per client address on the routes
//! that need no sign-in (the forwarded address only from a trusted proxy), shared by
//! every API process in distributed mode.

use std::time::Duration;

use petportrait_core::rate_limit::{Rate, RateLimiter};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

all_modes!(users_are_limited_one_by_one, users_are_limited_one_by_one);
all_modes!(addresses_are_limited_behind_trusted_proxies_only, addresses_are_limited_behind_trusted_proxies_only);

/// A refusal's status, problem code, `Retry-After` and `RateLimit` fields.
async fn assert_refused(response: reqwest::Response, policy: &str, limit: u32) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers().clone();
    let retry_after: u64 = headers["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-policy"], format!("\"{policy}\";q={limit};w=60").as_str());
    let state = headers["ratelimit"].to_str().expect("text");
    assert!(state.starts_with(&format!("\"{policy}\";r=0;t=")), "{state}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let body: Value = response.json().await.expect("a problem");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(body["status"], 429);
}

async fn users_are_limited_one_by_one(mode: Mode) {
    let app = TestApp::spawn(mode, &[("RATE_LIMIT_UPLOADS", "2/1m"), ("RATE_LIMIT_GENERATIONS", "2/1m")]).await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let first = ann.upload_ok(pet_jpeg()).await;
    ann.upload_ok(pet_jpeg()).await;
    assert_refused(ann.upload(pet_jpeg(), "pet.jpg", "image/jpeg").await, "uploads", 2).await;
    // Another user has an allowance of their own.
    let bobs = bob.upload_ok(pet_jpeg()).await;

    let credits = ann.available_credits().await;
    let order = json!({"kind": "portrait", "upload_id": first, "style": "watercolor"});
    let keyed = |key: &str| {
        ann.http.post(ann.url("/v1/generations")).header("idempotency-key", key.to_owned()).json(&order).send()
    };
    assert_eq!(keyed("one").await.expect("POST").status(), StatusCode::ACCEPTED);
    assert_eq!(keyed("two").await.expect("POST").status(), StatusCode::ACCEPTED);
    // Replaying a key creates nothing, so it is not counted.
    assert_eq!(keyed("one").await.expect("replay").status(), StatusCode::ACCEPTED);
    assert_refused(keyed("three").await.expect("POST"), "generations", 2).await;
    // The refused request held nothing.
    let held_for_two = credits - ann.available_credits().await;
    let (_, catalogue) = ann.get("/v1/quote?kind=portrait&style=watercolor").await;
    assert_eq!(held_for_two, 2 * catalogue["credits"].as_i64().expect("cost"));
    bob.create_portrait(&bobs, "watercolor").await;
    app.stop().await;
}

async fn addresses_are_limited_behind_trusted_proxies_only(mode: Mode) {
    let app = TestApp::spawn(mode, &[("RATE_LIMIT_ANONYMOUS", "3/1m"), ("TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let http = reqwest::Client::new();
    let policy = |forwarded: &'static str| {
        http.get(format!("{}/privacy", app.base_url)).header("x-forwarded-for", forwarded).send()
    };
    for _ in 0..3 {
        assert_eq!(policy("198.51.100.7").await.expect("GET").status(), StatusCode::OK);
    }
    assert_refused(policy("198.51.100.7").await.expect("GET"), "anonymous", 3).await;
    // Our proxy (loopback here) says another client is asking: its own allowance.
    assert_eq!(policy("198.51.100.8").await.expect("GET").status(), StatusCode::OK);
    // A client cannot escape by writing its own entry: only the rightmost one, which
    // our proxy appended, is read.
    assert_refused(policy("203.0.113.1, 198.51.100.7").await.expect("GET"), "anonymous", 3).await;
    // Signed-in routes are not limited per address.
    let ann = app.user("Ann").await;
    for _ in 0..5 {
        assert_eq!(ann.get("/v1/me").await.0, StatusCode::OK);
    }
    app.stop().await;

    // Without trusted proxies the header is nobody's word: the peer's address counts.
    let app = TestApp::spawn(mode, &[("RATE_LIMIT_ANONYMOUS", "2/1m")]).await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        let response = http.get(format!("{}/privacy", app.base_url)).header("x-forwarded-for", forwarded).send();
        assert_eq!(response.await.expect("GET").status(), StatusCode::OK);
    }
    let response = http.get(format!("{}/privacy", app.base_url)).header("x-forwarded-for", "198.51.100.3").send();
    assert_refused(response.await.expect("GET"), "anonymous", 2).await;
    app.stop().await;
}

/// Two API processes (two limiters on one Redis prefix) share one allowance, counted
/// on Redis's clock. (Named `…::redis` so `scripts/test` leaves it out, and says so,
/// where Redis does not answer.)
mod two_processes_share_one_allowance {
    #[tokio::test]
    async fn redis() {
        super::two_processes_share_one_allowance().await;
    }
}

async fn two_processes_share_one_allowance() {
    let target = petportrait_core::queue::redis_target(&petportrait_tests::redis_url(), false).expect("a Redis URL");
    let prefix = format!("test-{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
    let one = RateLimiter::redis(&target, &prefix).await.expect("first process");
    let two = RateLimiter::redis(&target, &prefix).await.expect("second process");
    let rate = Rate { limit: 3, period: Duration::from_secs(60) };
    let mut allowed = 0;
    for limiter in [&one, &two, &one, &two, &one] {
        if limiter.check("generations:usr_x", rate).await.expect("checked").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "three between them, not three each");
    let refused = two.check("generations:usr_x", rate).await.expect("checked");
    assert!(!refused.allowed && refused.retry_after > Duration::from_secs(15), "{refused:?}");
    assert!(two.check("generations:usr_y", rate).await.expect("checked").allowed, "another key");
}
