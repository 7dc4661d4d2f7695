//! The remote model provider against the fake provider (`support/fake_provider.rs`):
//! first `RemoteStudio` on its own (success, retries, Retry-After, error mapping,
//! deadline, cancel, circuit breaker, concurrency limit), then through the API in
//! both modes (success, 5xx then success, content policy, timeout, cancel).

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petportrait_core::config::Config;
use petportrait_core::domain::GenerationKind;
use petportrait_core::output_options::OutputOptions;
use petportrait_studio::{
    ProviderError, RemoteStudio, RenderContext, RenderRequest, RenderedFile, Studio, StudioError,
};
use petportrait_tests::fake_provider::{FakeProvider, Outcome, Script};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Client, Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::json;

// ---------------------------------------------------------------- RemoteStudio alone

pub(crate) fn remote_studio(fake: &FakeProvider, extra: &[(&str, &str)]) -> Arc<RemoteStudio> {
    let mut vars: Vec<(String, String)> = fake.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_vars(vars).unwrap_or_else(|e| panic!("{e}"));
    let provider = config.models.provider.as_ref().expect("a provider");
    let outputs = petportrait_core::outbound::Outbound::new(config.outbound_allow_private);
    let studio = RemoteStudio::new(provider, config.uploads.clone(), tokio::runtime::Handle::current(), outputs);
    Arc::new(studio.expect("the remote studio"))
}

pub(crate) fn portrait(idempotency_key: &str) -> RenderRequest {
    RenderRequest {
        kind: GenerationKind::Portrait,
        style: "watercolor".into(),
        input: pet_jpeg().into(),
        orientation: None,
        options: OutputOptions::default(),
        idempotency_key: idempotency_key.into(),
        pending_prediction: None,
    }
}

pub(crate) type Progress = Arc<Mutex<Vec<(u8, &'static str)>>>;

/// Renders on a blocking thread, as the worker does.
pub(crate) async fn render(
    studio: &Arc<RemoteStudio>,
    request: RenderRequest,
    cancel: Arc<AtomicBool>,
) -> (Result<Vec<RenderedFile>, StudioError>, Progress) {
    let progress: Progress = Arc::default();
    let seen = progress.clone();
    let ctx = RenderContext::new(move |p, s| seen.lock().expect("progress").push((p, s)), cancel);
    let studio = studio.clone();
    let result = tokio::task::spawn_blocking(move || studio.render(&request, &ctx)).await.expect("the render thread");
    (result, progress)
}

async fn render_once(studio: &Arc<RemoteStudio>, idempotency_key: &str) -> Result<Vec<RenderedFile>, StudioError> {
    render(studio, portrait(idempotency_key), Arc::default()).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_success_returns_the_providers_file() {
    let fake = FakeProvider::start(Script { polls: 3, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[]);
    let (result, progress) = render(&studio, portrait("gen_1-a1"), Arc::default()).await;
    let files = result.expect("a portrait");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].bytes, FakeProvider::output_png());
    assert_eq!((files[0].content_type, files[0].filename.as_str()), ("image/png", "portrait-watercolor.png"));

    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions, seen.downloads, seen.unauthorized), (1, 1, 1, 0));
    assert_eq!(seen.idempotency_keys, ["gen_1-a1"]);
    assert!(seen.cancel_after[0].ends_with('s'), "{:?}", seen.cancel_after);
    assert!(seen.cancels.is_empty());
    let input = &seen.inputs[0];
    assert_eq!((input["kind"].as_str(), input["style"].as_str()), (Some("portrait"), Some("watercolor")));
    assert_eq!((input["format"].as_str(), input["max_side"].as_u64()), (Some("jpeg"), Some(1024)));
    assert!(input["image"].as_str().is_some_and(|i| i.starts_with("data:image/jpeg;base64,")), "{input}");

    // Progress rises through the provider's states, the tqdm bar of its logs included.
    let progress = progress.lock().expect("progress").clone();
    let stages: Vec<&str> = progress.iter().map(|(_, s)| *s).collect();
    assert!(stages.starts_with(&["preparing", "submitting", "starting"]), "{progress:?}");
    assert!(progress.iter().any(|(p, s)| *s == "processing" && *p > 10), "{progress:?}");
    assert_eq!(progress.last().map(|(_, s)| *s), Some("downloading"));
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back: {progress:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_5xx_then_success_is_retried_without_a_second_prediction() {
    let script = Script { create_503: 2, poll_500: 2, ..Script::default() };
    let fake = FakeProvider::start(script).await;
    let studio = remote_studio(&fake, &[]);
    let files = render_once(&studio, "gen_2-a1").await.expect("a portrait after the outages");
    assert_eq!(files[0].bytes, FakeProvider::output_png());
    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions), (3, 1), "two 503s, then the create");
    assert!(seen.polls >= 2 + 3, "two 500s, then the polls to the end: {}", seen.polls);

    // A create whose answer is lost after the prediction was made (the fake, like
    // Replicate, ignores Idempotency-Key): the studio finds it in the provider's list
    // and follows it instead of creating another.
    fake.script(Script { create_lost: 1, ..Script::default() });
    render_once(&studio, "gen_3-a1").await.expect("a portrait after the lost answer");
    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions), (4, 2), "no second create for gen_3");
    assert_eq!(seen.idempotency_keys[3..], ["gen_3-a1"]);
    assert!(seen.lists >= 1, "the list was read");

    // A create that failed without making anything: looked up, not found, sent again.
    fake.script(Script { create_500: 1, ..Script::default() });
    render_once(&studio, "gen_4-a1").await.expect("a portrait after the 500");
    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions), (6, 3), "the create was sent again, once");
    assert_eq!(seen.idempotency_keys[4..], ["gen_4-a1", "gen_4-a1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_429_waits_for_retry_after() {
    let fake = FakeProvider::start(Script { create_429: 1, retry_after: "1", ..Script::default() }).await;
    let studio = remote_studio(&fake, &[]);
    render_once(&studio, "gen_4-a1").await.expect("a portrait after the 429");
    let seen = fake.seen();
    assert_eq!(seen.creates.len(), 2);
    let gap = seen.creates[1] - seen.creates[0];
    assert!(gap >= Duration::from_secs(1), "the retry came {gap:?} after the 429 asking for 1 s");
    assert!(gap < Duration::from_secs(3), "{gap:?}");

    // A Retry-After beyond what one attempt waits gives the attempt up at once.
    fake.script(Script { create_429: 1, retry_after: "3600", ..Script::default() });
    let started = Instant::now();
    let error = render_once(&studio, "gen_5-a1").await.expect_err("unavailable");
    assert!(matches!(error, StudioError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_map_to_permanent_or_retryable() {
    let fake = FakeProvider::start(Script { outcome: Outcome::ContentPolicy, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[]);
    let error = render_once(&studio, "cp-a1").await.expect_err("refused");
    assert!(matches!(error, StudioError::ContentPolicy(_)), "{error:?}");
    let cause = error.source().expect("the provider's error").to_string();
    assert!(cause.contains("E005"), "the cause chain keeps the provider's words: {cause}");
    assert!(fake.seen().cancels.is_empty(), "an ended prediction is not canceled");

    type Expected = fn(&StudioError) -> bool;
    let cases: [(Script, Expected); 7] = [
        (Script { outcome: Outcome::Fail("CUDA error: device-side assert".into()), ..Script::default() }, |e| {
            matches!(e, StudioError::ModelFailed(_))
        }),
        (Script { outcome: Outcome::SucceedWithHtml, ..Script::default() }, |e| {
            matches!(e, StudioError::ModelFailed(_))
        }),
        // A 404 on the output is not retried as an outage (that would pay for a new
        // prediction); the model's result is lost.
        (Script { outcome: Outcome::SucceedWithMissingOutput, ..Script::default() }, |e| {
            matches!(e, StudioError::ModelFailed(_))
        }),
        (Script { outcome: Outcome::CanceledByProvider, ..Script::default() }, |e| {
            matches!(e, StudioError::Unavailable(_))
        }),
        (
            Script {
                outcome: Outcome::Fail("Prediction interrupted; please retry (code: PA)".into()),
                ..Script::default()
            },
            |e| matches!(e, StudioError::Unavailable(_)),
        ),
        (
            Script { create_always: Some((422, json!({"detail": "input.style: unknown field"}))), ..Script::default() },
            |e| matches!(e, StudioError::RequestRejected(_)),
        ),
        (
            Script {
                create_always: Some((422, json!({"detail": [{"type": "content_policy_violation", "msg": "no"}]}))),
                ..Script::default()
            },
            |e| matches!(e, StudioError::ContentPolicy(_)),
        ),
    ];
    for (i, (script, expected)) in cases.into_iter().enumerate() {
        let description = format!("{script:?}");
        fake.script(script);
        let error = render_once(&studio, &format!("case{i}-a1")).await.expect_err("an error");
        assert!(expected(&error), "{description}: {error:?}");
    }

    // A wrong token: the operator's problem, retried as unavailable, never sent twice
    // by the retries of one call (401 is not retried).
    fake.script(Script::default());
    let wrong = remote_studio(&fake, &[("PROVIDER_TOKEN", "stale")]);
    let before = fake.seen().creates.len();
    let error = render_once(&wrong, "auth-a1").await.expect_err("unauthorized");
    assert!(matches!(error, StudioError::Unavailable(_)), "{error:?}");
    assert_eq!(fake.seen().creates.len(), before + 1);
}

/// Output URLs go through the SSRF-safe client: internal addresses in every spelling,
/// a name resolving to one, and a redirect towards one are refused, and the generation
/// fails as the model's (it is not retried as an outage, which would pay again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_outputs_never_reach_internal_addresses() {
    use petportrait_core::outbound::Outbound;
    let fake = FakeProvider::start(Script::default()).await;
    let mut vars: Vec<(String, String)> = fake.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    vars.push(("WEBHOOK_ALLOW_PRIVATE".into(), "false".into()));
    let config = Config::from_vars(vars).unwrap_or_else(|e| panic!("{e}"));
    let provider = config.models.provider.as_ref().expect("a provider");
    let hosts = std::collections::HashMap::from([(
        "cdn.provider.example".to_owned(),
        vec!["10.1.2.3".parse().expect("ip"), "93.184.216.34".parse().expect("ip")],
    )]);
    let outputs = Outbound::with_fixed_hosts(false, hosts);
    let studio = RemoteStudio::new(provider, config.uploads.clone(), tokio::runtime::Handle::current(), outputs)
        .expect("the remote studio");
    let studio = Arc::new(studio);
    for (i, url) in [
        "http://127.0.0.1:9/portrait.png",
        "https://127.0.0.1/portrait.png",
        "https://[::1]/portrait.png",
        "https://10.0.0.1/portrait.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/portrait.png",
        "https://2130706433/portrait.png",
        "https://cdn.provider.example/portrait.png",
    ]
    .into_iter()
    .enumerate()
    {
        fake.script(Script { outcome: Outcome::SucceedAt(url.to_owned()), ..Script::default() });
        let error = render_once(&studio, &format!("ssrf{i}-a1")).await.expect_err("refused");
        assert!(matches!(error, StudioError::ModelFailed(_)), "{url}: {error:?}");
        let chain = petportrait_core::errors::error_chain(&error);
        assert!(chain.contains("refused URL") || chain.contains("not a public address"), "{url}: {chain}");
    }
    assert_eq!(fake.seen().downloads, 0, "a download reached the fake (all of it is loopback)");

    // A redirect is an answer, never followed, even from a target that is allowed.
    let lenient = remote_studio(&fake, &[]);
    fake.script(Script { outcome: Outcome::SucceedWithRedirect, ..Script::default() });
    let error = render_once(&lenient, "redirect-a1").await.expect_err("not followed");
    assert!(matches!(error, StudioError::ModelFailed(_)), "{error:?}");
    assert!(petportrait_core::errors::error_chain(&error).contains("302"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_deadline_cancels_the_prediction() {
    let fake = FakeProvider::start(Script { outcome: Outcome::Never, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[("PROVIDER_TIMEOUT", "1s")]);
    let started = Instant::now();
    let error = render_once(&studio, "slow-a1").await.expect_err("too slow");
    assert!(matches!(error, StudioError::TimedOut { .. }), "{error:?}");
    assert!(started.elapsed() >= Duration::from_secs(1) && started.elapsed() < Duration::from_secs(4));
    let seen = fake.seen();
    assert_eq!(seen.cancels, ["fake0001"], "the abandoned prediction was canceled at the provider");
    assert_eq!(seen.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cancel_mid_poll_reaches_the_provider() {
    let fake = FakeProvider::start(Script { outcome: Outcome::Never, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[]);
    let cancel = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (studio, cancel) = (studio.clone(), cancel.clone());
        async move { render(&studio, portrait("cancel-a1"), cancel).await.0 }
    });
    wait_until("a few polls", Duration::from_secs(10), || async { (fake.seen().polls >= 3).then_some(()) }).await;
    let asked = Instant::now();
    cancel.store(true, Ordering::Relaxed);
    let error = running.await.expect("the render task").expect_err("canceled");
    assert!(matches!(error, StudioError::Canceled), "{error:?}");
    assert!(asked.elapsed() < Duration::from_secs(2), "stopped {:?} after the cancel", asked.elapsed());
    assert_eq!(fake.seen().cancels, ["fake0001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_circuit_breaker_fails_fast_then_recovers() {
    let script = Script { create_always: Some((500, json!({"detail": "down"}))), ..Script::default() };
    let fake = FakeProvider::start(script).await;
    let config =
        [("PROVIDER_RETRIES", "0"), ("PROVIDER_BREAKER_FAILURES", "3"), ("PROVIDER_BREAKER_COOLDOWN", "500ms")];
    let studio = remote_studio(&fake, &config);
    for i in 0..3 {
        let error = render_once(&studio, &format!("down{i}-a1")).await.expect_err("down");
        assert!(matches!(error, StudioError::Unavailable(_)), "{error:?}");
    }
    assert_eq!(fake.seen().creates.len(), 3);

    // Open: fails fast, nothing reaches the provider.
    let started = Instant::now();
    let error = render_once(&studio, "open-a1").await.expect_err("open");
    let StudioError::Unavailable(cause) = &error else { panic!("{error:?}") };
    assert!(matches!(cause.downcast_ref::<ProviderError>(), Some(ProviderError::CircuitOpen { .. })), "{cause:?}");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(fake.seen().creates.len(), 3, "no request while open");

    // After the cooldown one probe goes through; the provider is back, so it closes.
    fake.script(Script::default());
    // Until the cooldown ends every try fails fast without reaching the provider.
    wait_until("the breaker to let a probe through", Duration::from_secs(5), || async {
        render_once(&studio, "back-a1").await.ok()
    })
    .await;
    render_once(&studio, "back-a2").await.expect("closed again");
    assert_eq!(fake.seen().predictions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_concurrency_limit_is_never_exceeded() {
    let fake = FakeProvider::start(Script { polls: 4, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[("PROVIDER_CONCURRENCY", "2")]);
    let renders: Vec<_> = (0..6)
        .map(|i| {
            let studio = studio.clone();
            tokio::spawn(async move { render_once(&studio, &format!("many{i}-a1")).await })
        })
        .collect();
    for render in renders {
        render.await.expect("the render task").expect("a portrait");
    }
    let seen = fake.seen();
    assert_eq!(seen.predictions, 6);
    assert_eq!(seen.max_in_flight, 2, "two at a time, never more");
}

// ---------------------------------------------------------------- through the API

all_modes!(remote_generation_succeeds, remote_generation_succeeds);
all_modes!(remote_5xx_then_success_charges_once, remote_5xx_then_success_charges_once);
all_modes!(remote_content_policy_fails_and_refunds, remote_content_policy_fails_and_refunds);
all_modes!(remote_timeouts_are_retried_then_refunded, remote_timeouts_are_retried_then_refunded);
all_modes!(remote_cancel_reaches_the_provider, remote_cancel_reaches_the_provider);

/// The app with portraits made by the fake provider.
async fn app_with_fake(mode: Mode, script: Script, extra: &[(&str, &str)]) -> (TestApp, FakeProvider) {
    let fake = FakeProvider::start(script).await;
    let env = fake.env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    let app = TestApp::spawn(mode, &overrides).await;
    (app, fake)
}

pub(crate) async fn create(ann: &Client) -> String {
    let upload = ann.upload_ok(pet_jpeg()).await;
    ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn ledger_kinds(ann: &Client) -> Vec<String> {
    ann.ledger().await.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect()
}

async fn remote_generation_succeeds(mode: Mode) {
    let (app, fake) = app_with_fake(mode, Script::default(), &[]).await;
    let ann = app.user("Ann").await;
    let id = create(&ann).await;
    let done = ann.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outputs"][0]["content_type"], "image/png", "{done}");
    let (status, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, FakeProvider::output_png(), "the file the provider made");
    assert_eq!(done["cost"], json!({"credits": 4, "charged": 4, "refunded": 0}));
    let seen = fake.seen();
    assert_eq!(seen.idempotency_keys, [format!("{id}-a1")]);
    // A finished generation cannot be canceled, and the provider hears nothing of it.
    let (status, problem) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("already_completed")));
    assert!(fake.seen().cancels.is_empty());
    app.stop().await;
}

async fn remote_5xx_then_success_charges_once(mode: Mode) {
    let script = Script { create_503: 1, create_lost: 1, poll_500: 1, ..Script::default() };
    let (app, fake) = app_with_fake(mode, script, &[]).await;
    let ann = app.user("Ann").await;
    let id = create(&ann).await;
    let done = ann.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions), (2, 1), "503, then a lost answer found in the list");
    let charges = ann.ledger().await.iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 1);
    let (_, me) = ann.get("/v1/me").await;
    assert_eq!(me["credits"], json!({"balance": 6, "held": 0}));
    app.stop().await;
}

async fn remote_content_policy_fails_and_refunds(mode: Mode) {
    let (app, fake) = app_with_fake(mode, Script { outcome: Outcome::ContentPolicy, ..Script::default() }, &[]).await;
    let ann = app.user("Ann").await;
    let id = create(&ann).await;
    let done = ann.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "content_policy", "{done}");
    assert_eq!(done["error"]["retryable"], false);
    assert_eq!(done["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}), "charged, then refunded");
    assert_eq!(ann.available_credits().await, 10);
    assert_eq!(ledger_kinds(&ann).await, ["refund", "charge", "hold", "grant"]);
    assert_eq!(fake.seen().predictions, 1, "not retried");
    app.stop().await;
}

async fn remote_timeouts_are_retried_then_refunded(mode: Mode) {
    let script = Script { outcome: Outcome::Never, ..Script::default() };
    let (app, fake) = app_with_fake(mode, script, &[("PROVIDER_TIMEOUT", "1s"), ("JOB_MAX_ATTEMPTS", "2")]).await;
    let ann = app.user("Ann").await;
    let id = create(&ann).await;
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "attempts_exhausted", "{done}");
    assert_eq!(done["error"]["retryable"], true);
    assert_eq!(done["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}));
    assert_eq!(ann.available_credits().await, 10);
    let seen = fake.seen();
    assert_eq!(seen.idempotency_keys, [format!("{id}-a1"), format!("{id}-a2")], "a new prediction per attempt");
    assert_eq!(seen.cancels, ["fake0001", "fake0002"], "each timed-out prediction was canceled");
    app.stop().await;
}

async fn remote_cancel_reaches_the_provider(mode: Mode) {
    let (app, fake) = app_with_fake(mode, Script { outcome: Outcome::Never, ..Script::default() }, &[]).await;
    let ann = app.user("Ann").await;
    let id = create(&ann).await;
    wait_until("the prediction to run", Duration::from_secs(30), || async {
        let (_, body) = ann.get(&format!("/v1/generations/{id}")).await;
        (body["status"] == "processing" && body["cost"]["charged"] == 4 && fake.seen().polls >= 2).then_some(())
    })
    .await;
    let (status, body) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cost"], json!({"credits": 4, "charged": 4, "refunded": 4}));
    // The worker learns of it at its next heartbeat (1 s in the tests) and cancels the
    // prediction at the provider.
    wait_until("the provider to see the cancel", Duration::from_secs(10), || async {
        (fake.seen().cancels == ["fake0001"]).then_some(())
    })
    .await;
    let (_, after) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!(after["status"], "canceled");
    assert_eq!(ledger_kinds(&ann).await, ["refund", "charge", "hold", "grant"]);
    // Canceled is terminal: a second cancel is refused and refunds nothing more.
    let (status, problem) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("already_completed")));
    assert_eq!(ledger_kinds(&ann).await, ["refund", "charge", "hold", "grant"]);
    app.stop().await;
}
