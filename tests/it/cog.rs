//! Self-hosted Cog model servers: the real Cog server from PyPI (`support/cog.rs`)
//! running the test predictors of `tests/cog/predict.py`, through the API in both
//! modes (a portrait, cancel, a failing model, a failed setup, a server killed
//! mid-prediction, two servers sharing twenty generations), and `CogStudio` alone for
//! the start-up schema check and the deadline.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use petportrait_core::config::Config;
use petportrait_core::domain::GenerationKind;
use petportrait_core::output_options::OutputOptions;
use petportrait_studio::{CogStudio, RenderContext, RenderRequest, Studio, StudioError};
use petportrait_tests::cog::{CogServer, most_at_once};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

/// The app with portraits on `servers` (a `COG_URL_PORTRAIT` list), once its worker
/// has published what its health checks saw.
async fn app_on(mode: Mode, servers: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("MODEL_PORTRAIT", "cog"),
        ("COG_URL_PORTRAIT", servers),
        ("COG_HEALTH_INTERVAL", "1s"),
        ("STARTER_CREDITS", "100"),
    ];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn(mode, &vars).await;
    wait_until("the worker to publish the servers' availability", Duration::from_secs(15), || async {
        let reports = app.services.db.model_availability(GenerationKind::Portrait, 0).await.expect("read");
        (!reports.is_empty()).then_some(())
    })
    .await;
    app
}

fn charges_of(ledger: &[Value], generation: &str) -> Vec<String> {
    ledger
        .iter()
        .filter(|e| e["generation_id"] == generation)
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

all_modes!(cog_portrait_is_the_predictors_image, portrait_is_the_predictors_image);

async fn portrait_is_the_predictors_image(mode: Mode) {
    let server = CogServer::start("Portrait").await;
    let app = app_on(mode, &server.url, &[]).await;
    let ann = app.user("Ann").await;
    let (_, styles) = ann.get("/v1/styles").await;
    let portrait = styles["kinds"].as_array().expect("kinds").iter().find(|k| k["kind"] == "portrait").cloned();
    assert_eq!(portrait.as_ref().map(|p| p["available"].clone()), Some(Value::Bool(true)), "{styles}");
    let (status, ready) = ann.get("/readyz").await;
    assert_eq!((status, ready["models"]["portrait"].as_bool()), (StatusCode::OK, Some(true)), "{ready}");

    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "pencil_sketch").await;
    let id = created["id"].as_str().expect("id");
    let done = ann.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outputs"][0]["content_type"], "image/png", "{done}");
    let (status, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);
    // The file is the one the predictor made (it kept a copy), byte for byte.
    let made = server.marks("png");
    assert_eq!(made.len(), 1, "one prediction ran: {made:?}");
    let kept = std::fs::read(server.log_dir.join(format!("{}.png", made[0]))).expect("the predictor's copy");
    assert!(bytes == kept, "the portrait is not the predictor's image ({} vs {} bytes)", bytes.len(), kept.len());
    let ledger = ann.ledger().await;
    assert_eq!(charges_of(&ledger, id), ["charge", "hold"], "{ledger:?}");
    app.stop().await;
}

all_modes!(cog_cancel_reaches_the_server, cancel_reaches_the_server);

async fn cancel_reaches_the_server(mode: Mode) {
    let server = CogServer::start("Sleeper").await;
    let app = app_on(mode, &server.url, &[]).await;
    let ann = app.user("Ann").await;
    let before = ann.available_credits().await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until("the prediction to start on the Cog server", Duration::from_secs(30), || async {
        (!server.marks("start").is_empty()).then_some(())
    })
    .await;
    let (status, body) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &Value::Null).await;
    assert!(status.is_success(), "{status}: {body}");
    // The predictor itself was interrupted: the server canceled the prediction.
    wait_until("the predictor to be canceled", Duration::from_secs(15), || async {
        (!server.marks("canceled").is_empty()).then_some(())
    })
    .await;
    assert!(server.marks("end").is_empty(), "the prediction ran to its end");
    wait_until("the server to be free again", Duration::from_secs(15), || async {
        (server.health().await.as_deref() == Some("READY")).then_some(())
    })
    .await;
    let done = ann.wait_terminal(&id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(ann.available_credits().await, before, "the credits came back");
    app.stop().await;
}

all_modes!(cog_failure_is_refunded, failure_is_refunded);

async fn failure_is_refunded(mode: Mode) {
    let server = CogServer::start("Failing").await;
    let app = app_on(mode, &server.url, &[]).await;
    let ann = app.user("Ann").await;
    let before = ann.available_credits().await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("model_failed")),
        "{done}"
    );
    assert_eq!(ann.available_credits().await, before, "refunded");
    let ledger = ann.ledger().await;
    assert_eq!(charges_of(&ledger, &id), ["refund", "charge", "hold"], "{ledger:?}");
    assert_eq!(server.marks("start").len(), 1, "the model ran once: a failure is not retried");
    app.stop().await;
}

all_modes!(cog_failed_setup_makes_the_kind_unavailable, failed_setup_makes_the_kind_unavailable);

async fn failed_setup_makes_the_kind_unavailable(mode: Mode) {
    let server = CogServer::start_with("BrokenSetup", 1, "SETUP_FAILED").await;
    let app = app_on(mode, &server.url, &[]).await;
    let ann = app.user("Ann").await;
    let (_, styles) = ann.get("/v1/styles").await;
    let kind = |name: &str| styles["kinds"].as_array().expect("kinds").iter().find(|k| k["kind"] == name).cloned();
    let portrait = kind("portrait").expect("portrait");
    assert_eq!(portrait["available"], false, "{portrait}");
    assert!(portrait["styles"].as_array().expect("styles").iter().all(|s| s["available"] == false), "{portrait}");
    assert_eq!(kind("music").expect("music")["available"], true, "music is local: {styles}");
    let (status, ready) = ann.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "the API still serves the rest: {ready}");
    assert_eq!((ready["models"]["portrait"].as_bool(), ready["models"]["music"].as_bool()), (Some(false), Some(true)));

    let before = ann.available_credits().await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let body = serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"});
    let response = ann.http.post(ann.url("/v1/generations")).json(&body).send().await.expect("create");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"), "{:?}", response.headers());
    let problem: Value = response.json().await.expect("problem+json");
    assert_eq!(problem["code"], "model_unavailable", "{problem}");
    assert_eq!(ann.available_credits().await, before, "nothing held");
    app.stop().await;
}

all_modes!(cog_server_killed_mid_prediction, server_killed_mid_prediction);

/// The first server dies with the prediction running: the render moves to the second
/// server in the same attempt, and the generation is charged once.
async fn server_killed_mid_prediction(mode: Mode) {
    let mut doomed = CogServer::start("Sleeper").await;
    let healthy = CogServer::start("Portrait").await;
    let servers = format!("{},{}", doomed.url, healthy.url);
    let app = app_on(mode, &servers, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    wait_until("the prediction to start on the first server", Duration::from_secs(30), || async {
        (!doomed.marks("start").is_empty()).then_some(())
    })
    .await;
    doomed.kill();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(healthy.marks("png").len(), 1, "the second server made the portrait");
    let (_, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
    let kept = std::fs::read(healthy.log_dir.join(format!("{}.png", healthy.marks("png")[0]))).expect("its copy");
    assert!(bytes == kept, "the portrait is the second server's");
    let ledger = ann.ledger().await;
    assert_eq!(charges_of(&ledger, &id), ["charge", "hold"], "charged once: {ledger:?}");
    let generation = petportrait_core::ids::GenerationId::parse(&id).expect("generation id");
    let row = app.services.db.get_generation(&generation).await.expect("read").expect("row");
    assert_eq!(row.attempts, 1, "moved to the other server within the attempt");
    app.stop().await;
}

all_modes!(cog_two_servers_share_the_load, two_servers_share_the_load);

/// Twenty generations on a server with two slots and one with one: both work, neither
/// ever runs more predictions at once than its slots.
async fn two_servers_share_the_load(mode: Mode) {
    let logs = petportrait_tests::logs::CapturedLogs::install();
    let double = CogServer::start_with("ConcurrentPortrait", 2, "READY").await;
    let single = CogServer::start("Portrait").await;
    let servers = format!("{}#concurrency=2,{}", double.url, single.url);
    let extra = [
        ("WORKER_CONCURRENCY", "4"),
        ("STARTER_CREDITS", "200"),
        ("COG_INPUT_PORTRAIT", r#"{"image": "{photo}", "style": "{style}", "hold_ms": 150}"#),
    ];
    let app = app_on(mode, &servers, &extra).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(ann.create_portrait(&upload, "pencil_sketch").await["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let done = ann.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let (on_double, on_single) = (double.spans(), single.spans());
    assert_eq!(on_double.len() + on_single.len(), 20, "{} + {}", on_double.len(), on_single.len());
    assert!(!on_double.is_empty() && !on_single.is_empty(), "{} + {}", on_double.len(), on_single.len());
    assert!(most_at_once(&on_double) <= 2, "the two-slot server ran {} at once", most_at_once(&on_double));
    assert!(most_at_once(&on_single) <= 1, "the one-slot server ran {} at once", most_at_once(&on_single));
    // Our own count per server: when a prediction ends, the others still running on its
    // server leave room for it (a 409 may still come now and then: Cog frees a slot
    // just after it answers, and a waiting render may be quicker).
    let text = logs.text();
    let ended: Vec<&str> = text.lines().filter(|l| l.contains("Cog prediction ended")).collect();
    assert_eq!(ended.len(), 20, "one prediction per generation");
    for line in ended {
        let field = |name: &str| line.split(&format!("{name}=")).nth(1).and_then(|v| v.split(' ').next());
        let others: usize = field("server.in_flight").and_then(|n| n.parse().ok()).expect("server.in_flight");
        let slots = if field("cog.server") == Some(double.url.as_str()) { 2 } else { 1 };
        assert!(others < slots, "{others} others running beside a prediction on a {slots}-slot server: {line}");
    }
    println!(
        "split: {} on the two-slot server (at most {} at once), {} on the one-slot server",
        on_double.len(),
        most_at_once(&on_double),
        on_single.len()
    );
    app.stop().await;
}

// ---------------------------------------------------------------- CogStudio alone

fn cog_config(servers: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![("MODEL_PORTRAIT".to_owned(), "cog".to_owned()), ("COG_URL_PORTRAIT".into(), servers.into())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cog_inputs_the_model_does_not_take_stop_the_start() {
    let server = CogServer::start("Portrait").await;
    let template = r#"{"photo": "{photo}", "style": "{style}", "strength": 0.5, "hold_ms": "long"}"#;
    let config = cog_config(&server.url, &[("COG_INPUT_PORTRAIT_OIL_PAINT", template)]);
    let error = match petportrait_studio::from_config(&config).await {
        Ok(_) => panic!("the studio started with inputs its model does not take"),
        Err(error) => petportrait_core::errors::error_chain(&error),
    };
    for expected in [
        "portrait/oil_paint: input \"photo\" is not an input of this model",
        "portrait/oil_paint: input \"strength\" is not an input",
        "portrait/oil_paint: input \"hold_ms\" takes a integer",
        "portrait/oil_paint: the model requires input \"image\"",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    // The other styles use the default template, which fits.
    assert!(!error.contains("watercolor"), "{error}");
}

async fn connect(config: &Config) -> Arc<CogStudio> {
    let cog = config.models.cog.as_ref().expect("cog");
    Arc::new(CogStudio::connect(cog, config.uploads.clone()).await.expect("the Cog studio"))
}

/// Renders a watercolor portrait on a blocking thread, as the worker does.
async fn render_on(studio: &Arc<CogStudio>, key: &str) -> Result<Vec<petportrait_studio::RenderedFile>, StudioError> {
    let request = RenderRequest {
        kind: GenerationKind::Portrait,
        style: "watercolor".into(),
        input: pet_jpeg().into(),
        orientation: None,
        options: OutputOptions::default(),
        idempotency_key: key.into(),
        pending_prediction: None,
    };
    let studio = studio.clone();
    tokio::task::spawn_blocking(move || {
        studio.render(&request, &RenderContext::new(|_, _| {}, Arc::new(AtomicBool::new(false))))
    })
    .await
    .expect("the render thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cog_deadline_cancels_the_prediction() {
    let server = CogServer::start("Sleeper").await;
    let studio = connect(&cog_config(&server.url, &[("COG_TIMEOUT", "1s"), ("JOB_TIMEOUT", "10s")])).await;
    let started = Instant::now();
    let result = render_on(&studio, "gen_deadline-a1").await;
    assert!(matches!(result, Err(StudioError::TimedOut { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    wait_until("the predictor to be canceled", Duration::from_secs(10), || async {
        (!server.marks("canceled").is_empty()).then_some(())
    })
    .await;
}

/// Two processes (two studios) on one single-slot server: the one that finds it busy
/// (409) waits its turn instead of failing, and the server never runs two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cog_two_processes_on_one_slot_take_turns() {
    let server = CogServer::start("Portrait").await;
    let template = r#"{"image": "{photo}", "style": "{style}", "hold_ms": 300}"#;
    let config = cog_config(&server.url, &[("COG_INPUT_PORTRAIT", template)]);
    let (first, second) = (connect(&config).await, connect(&config).await);
    let (a, b) = tokio::join!(render_on(&first, "gen_turn1-a1"), render_on(&second, "gen_turn2-a1"));
    assert_eq!((a.expect("the first").len(), b.expect("the second").len()), (1, 1));
    let spans = server.spans();
    assert_eq!((spans.len(), most_at_once(&spans)), (2, 1), "{spans:?}");
}
