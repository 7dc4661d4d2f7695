//! `/metrics`: after a generation, the series an operator needs are there with their
//! labels, as Prometheus's own parser reads them.

use std::time::Duration;

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::verifier::prometheus_samples;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

all_modes!(metrics_show_requests_queue_and_generations, metrics_show_requests_queue_and_generations);

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
    // Prometheus names the target by its address, not PUBLIC_URL's host.
    let scraped = reqwest::Client::new()
        .get(format!("{}/metrics", app.base_url))
        .header("host", "10.0.3.7:8080")
        .send()
        .await
        .expect("scrape by address");
    assert_eq!(scraped.status(), StatusCode::OK);
    // A path no route takes is counted without making a series of its own.
    let probe = reqwest::get(format!("{}/wp-admin/setup.php", app.base_url)).await.expect("probe");
    assert_eq!(probe.status(), StatusCode::NOT_FOUND);
    let text = reqwest::get(format!("{}/metrics", app.base_url)).await.expect("scrape").text().await.expect("text");
    assert!(!text.contains("wp-admin"), "a raw path became a label");
    let unrouted = find(
        &prometheus_samples(&text),
        "petportrait_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    )
    .len();
    assert_eq!(unrouted, 1, "{text}");

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

    // How long the oldest ready job waited (nothing waits now), the webhook backlog.
    for queue in ["generation", "webhook"] {
        let lag = find(&samples, "petportrait_queue_lag_seconds", &[("queue", queue)]);
        assert_eq!(lag.first().and_then(|s| s["value"].as_f64()), Some(0.0), "{queue}: {text}");
    }
    assert_eq!(find(&samples, "petportrait_queue_jobs", &[("queue", "webhook"), ("state", "ready")]).len(), 1);
    // The ledger: one watercolor (4 credits) held, charged, and nothing held any more.
    let charged = find(&samples, "petportrait_ledger_credits", &[("kind", "charge")]);
    assert_eq!(charged.first().and_then(|s| s["value"].as_f64()), Some(4.0), "{text}");
    let held = find(&samples, "petportrait_credits_held", &[]);
    assert_eq!(held.first().and_then(|s| s["value"].as_f64()), Some(0.0), "{text}");

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

all_modes!(metrics_show_a_waiting_generation, metrics_show_a_waiting_generation);

/// With no worker running, a generation waits: the queue shows it ready and its lag grows.
async fn metrics_show_a_waiting_generation(mode: Mode) {
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    ann.create_portrait(&upload, "watercolor").await;
    let scrape = || async {
        let text = reqwest::get(format!("{}/metrics", app.base_url)).await.expect("scrape").text().await.expect("text");
        prometheus_samples(&text)
    };
    let value = |samples: &[Value], name: &str, labels: &[(&str, &str)]| {
        find(samples, name, labels).first().and_then(|s| s["value"].as_f64()).unwrap_or(-1.0)
    };
    let first = value(&scrape().await, "petportrait_queue_lag_seconds", &[("queue", "generation")]);
    let samples = petportrait_tests::wait_until("the lag to grow", Duration::from_secs(10), || async {
        let samples = scrape().await;
        (value(&samples, "petportrait_queue_lag_seconds", &[("queue", "generation")]) > first).then_some(samples)
    })
    .await;
    assert_eq!(value(&samples, "petportrait_queue_jobs", &[("queue", "generation"), ("state", "ready")]), 1.0);
    assert_eq!(value(&samples, "petportrait_credits_held", &[]), 4.0, "the generation's hold");
    app.stop().await;
}

/// Every series the Grafana dashboard in `ops/` queries is one the service exports
/// (a histogram's `_bucket`, `_count` and `_sum` included), and it uses them all.
#[test]
fn the_dashboard_queries_only_exported_series() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("petportrait_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                let base =
                    ["_bucket", "_count", "_sum"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(petportrait_core::metrics::ALL.contains(&base), "{name} in {expr:?} is not exported");
                used.insert(base.to_owned());
            }
        }
    }
    let unused: Vec<&&str> = petportrait_core::metrics::ALL.iter().filter(|m| !used.contains(**m)).collect();
    assert!(unused.is_empty(), "not on the dashboard: {unused:?}");
}
