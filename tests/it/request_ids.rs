//! `X-Request-Id`: given or made, echoed, and carried from the API request into the
//! worker's job and the webhook deliveries' log lines; and no personal detail of the
//! user in any log line of the whole run.

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::logs::CapturedLogs;
use petportrait_tests::receiver::{Answer, Receiver};
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(request_ids_follow_a_generation, request_ids_follow_a_generation);

async fn request_ids_follow_a_generation(mode: Mode) {
    let logs = CapturedLogs::install();
    let receiver = Receiver::start().await;
    let vars = [("WEBHOOK_ALLOW_PRIVATE", "true"), ("WEBHOOK_RETRY_SCHEDULE", "0,200ms,300ms")];
    let app = TestApp::spawn(mode, &vars).await;
    // A name and an address nothing else in the run contains.
    let user = app.user("Quintessa").await;
    let upload = user.upload_ok(pet_jpeg()).await;

    // A request without an id gets one made for it.
    let made = user.http.get(user.url("/v1/styles")).send().await.expect("styles");
    let made_id = made.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(made_id.len(), 26, "a ULID: {made_id}");
    // An unusable one is replaced, not echoed.
    let bad = user.http.get(user.url("/v1/styles")).header("x-request-id", "a b").send().await.expect("styles");
    assert_ne!(bad.headers()["x-request-id"], "a b");

    let body = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor",
                      "webhook": receiver.path("hook", Answer::Ok)});
    let created = user
        .http
        .post(user.url("/v1/generations"))
        .header("x-request-id", "trace-7f3a.create")
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    assert_eq!(created.headers()["x-request-id"], "trace-7f3a.create", "echoed");
    let id = created.json::<serde_json::Value>().await.expect("the generation")["id"].as_str().expect("id").to_owned();
    let done = user.wait_terminal(&id, std::time::Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    receiver.wait_for("hook", 1, |m| m.event_type() == "generation.succeeded").await;
    app.stop().await;

    let text = logs.text();
    let carrying: Vec<&str> = text.lines().filter(|l| l.contains("trace-7f3a.create")).collect();
    assert!(
        carrying.iter().any(|l| l.contains("job.kind=\"generation\"") && l.contains("generation succeeded")),
        "the worker's lines: {carrying:#?}"
    );
    assert!(
        carrying.iter().any(|l| l.contains("job.kind=\"webhook\"") && l.contains("webhook attempt")),
        "the deliveries' lines: {carrying:#?}"
    );
    // Personal data never reaches a log line.
    for personal in ["Quintessa", "quintessa"] {
        assert!(!text.contains(personal), "{personal:?} in the logs");
    }
}
