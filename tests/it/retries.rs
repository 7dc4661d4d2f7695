//! Failure classification: retryable failures are retried with backoff up to the
//! attempt limit, then fail with the credits given back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::FlakyStudio;
use petportrait_tests::{Mode, TestApp};

both_modes!(
    retryable_failures_are_retried_then_succeed,
    retryable_failures_are_retried_then_succeed
);
both_modes!(
    exhausted_attempts_fail_and_refund,
    exhausted_attempts_fail_and_refund
);

async fn retryable_failures_are_retried_then_succeed(mode: Mode) {
    let studio = FlakyStudio::new(
        petportrait_core::config::Config::from_vars(Vec::<(String, String)>::new())
            .expect("defaults")
            .uploads,
        2,
    );
    let app = TestApp::spawn_with(
        mode,
        &[("JOB_MAX_ATTEMPTS", "3")],
        petportrait::Roles::ALL,
        Some(studio.clone()),
    )
    .await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        studio.calls.load(Ordering::SeqCst),
        3,
        "two failed attempts and one that worked"
    );
    let charges = ann
        .ledger()
        .await
        .iter()
        .filter(|e| e["kind"] == "charge")
        .count();
    assert_eq!(charges, 1, "charged once across three attempts");
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], serde_json::json!({"balance": 6, "held": 0}));
    app.stop().await;
}

async fn exhausted_attempts_fail_and_refund(mode: Mode) {
    let studio = FlakyStudio::new(
        petportrait_core::config::Config::from_vars(Vec::<(String, String)>::new())
            .expect("defaults")
            .uploads,
        usize::MAX,
    );
    let app = TestApp::spawn_with(
        mode,
        &[("JOB_MAX_ATTEMPTS", "2")],
        petportrait::Roles::ALL,
        Some(studio.clone()),
    )
    .await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "attempts_exhausted");
    assert_eq!(done["error"]["retryable"], true);
    assert_eq!(
        done["cost"],
        serde_json::json!({"credits": 4, "charged": 4, "refunded": 4})
    );
    assert_eq!(studio.calls.load(Ordering::SeqCst), 2);
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], serde_json::json!({"balance": 10, "held": 0}));
    let kinds: Vec<String> = ann
        .ledger()
        .await
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds, ["refund", "charge", "hold", "grant"]);
    app.stop().await;
}
