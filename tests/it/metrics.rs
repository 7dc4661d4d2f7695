//! `/metrics`: after a generation, the series an operator needs are there with their
//! labels, as Prometheus's own parser reads them.

use std::time::Duration;

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::verifier::prometheus_samples;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

both_modes!(metrics_show_requests_queue_and_generations, metrics_show_requests_queue_and_generations);

/// The samples named `name` whose labels include every pair of `labels`.
fn find<'a>(samples: &'a [Value], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Value> {
    samples.iter().filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v)).collect()
}

async fn metrics_show_requests_queue_and_generations(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let response = reqwest::get(format!("{}/metrics", app.base_url)).await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("text").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("the exposition");
    let samples = prometheus_samples(&text);

    // Requests by route template (never the raw path with its id) and status.
    let created = find(
        &samples,
        "petportrait_http_requests_total",
        &[("method", "POST"), ("route", "/v1/generations"), ("status", "202")],
    );
    assert_eq!(created.len(), 1, "{text}");
    assert_eq!(created[0]["value"].as_f64(), Some(1.0));
    let polled = find(
        &samples,
        "petportrait_http_requests_total",
        &[("method", "GET"), ("route", "/v1/generations/{id}"), ("status", "200")],
    );
    assert!(!polled.is_empty() && polled[0]["value"].as_f64() >= Some(1.0), "{text}");
    assert!(!text.contains(&id), "a generation id in a label");
    let latency = find(&samples, "petportrait_http_request_duration_seconds_count", &[("route", "/v1/uploads")]);
    assert_eq!(latency.first().and_then(|s| s["value"].as_f64()), Some(1.0), "{text}");

    // The queue's depth per state, read at the scrape.
    for state in ["ready", "delayed", "active", "dead"] {
        let depth = find(&samples, "petportrait_queue_jobs", &[("queue", "generation"), ("state", state)]);
        assert_eq!(depth.len(), 1, "{state}: {text}");
    }

    // The attempt, by kind, style and outcome, with its duration.
    let labels = [("kind", "portrait"), ("style", "watercolor"), ("outcome", "succeeded")];
    let attempts = find(&samples, "petportrait_generation_attempts_total", &labels);
    assert_eq!(attempts.first().and_then(|s| s["value"].as_f64()), Some(1.0), "{text}");
    let timed = find(&samples, "petportrait_generation_attempt_duration_seconds_count", &labels);
    assert_eq!(timed.first().and_then(|s| s["value"].as_f64()), Some(1.0), "{text}");
    let started = find(&samples, "petportrait_generation_attempts_started_total", &[("kind", "portrait")]);
    assert_eq!(started.first().and_then(|s| s["value"].as_f64()), Some(1.0), "{text}");
    app.stop().await;
}
