//! Failure classification: retryable failures are retried with backoff up to the
//! attempt limit, then fail with the credits given back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::FlakyStudio;
use petportrait_tests::{Client, Mode, TestApp};
use serde_json::{Value, json};

all_modes!(retryable_failures_are_retried_then_succeed, retryable_failures_are_retried_then_succeed);
all_modes!(exhausted_attempts_fail_and_refund, exhausted_attempts_fail_and_refund);

/// Runs one watercolor portrait through a studio that fails `outages` times.
async fn portrait_through_outages(
    mode: Mode,
    outages: usize,
    max_attempts: &str,
) -> (TestApp, Client, Value, Arc<FlakyStudio>) {
    let studio = FlakyStudio::new(outages);
    let overrides = [("JOB_MAX_ATTEMPTS", max_attempts)];
    let app = TestApp::spawn_with(mode, &overrides, petportrait::Roles::ALL, Some(studio.clone())).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    (app, ann, done, studio)
}

async fn retryable_failures_are_retried_then_succeed(mode: Mode) {
    let (app, ann, done, studio) = portrait_through_outages(mode, 2, "3").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(studio.calls.load(Ordering::SeqCst), 3, "two failed attempts and one that worked");
    let charges = ann.ledger().await.iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 1, "charged once across three attempts");
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], json!({"balance": 6, "held": 0}));
    app.stop().await;
}

async fn exhausted_attempts_fail_and_refund(mode: Mode) {
    let (app, ann, done, studio) = portrait_through_outages(mode, usize::MAX, "2").await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "attempts_exhausted");
    assert_eq!(done["error"]["retryable"], true);
    assert_eq!(done["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}));
    assert_eq!(studio.calls.load(Ordering::SeqCst), 2);
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], json!({"balance": 10, "held": 0}));
    let kinds: Vec<String> = ann.ledger().await.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect();
    assert_eq!(kinds, ["refund", "charge", "hold", "grant"]);
    app.stop().await;
}
