//! Never paying twice for one remote prediction across attempts: an earlier attempt's
//! recorded prediction is followed, alone and through a worker killed mid-prediction
//! (the lost-create lookup within an attempt is in `remote.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use petportrait_tests::fake_provider::{FakeProvider, Script};
use petportrait_tests::{Mode, TestApp, wait_until};
use serde_json::{Value, json};

use crate::remote::{create, ledger_kinds, portrait, remote_studio, render};
use petportrait_studio::{RenderContext, Studio};

all_modes!(remote_killed_worker_prediction_is_followed_again, remote_killed_worker_prediction_is_followed_again);

/// An earlier attempt's recorded prediction is followed while it runs or has
/// succeeded; one that ended otherwise is replaced by a new prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_recorded_prediction_is_followed_not_paid_again() {
    let fake = FakeProvider::start(Script { polls: 3, ..Script::default() }).await;
    let studio = remote_studio(&fake, &[]);
    let http = reqwest::Client::new();
    let make = |input: Value| {
        let (http, url) = (http.clone(), format!("{}/v1/predictions", fake.url));
        async move {
            let created: Value = http
                .post(url)
                .bearer_auth(petportrait_tests::fake_provider::TOKEN)
                .json(&json!({"version": "acme/pet-portraits:0123abcd", "input": input}))
                .send()
                .await
                .expect("create")
                .json()
                .await
                .expect("a prediction");
            created["id"].as_str().expect("id").to_owned()
        }
    };
    // An attempt that died while its prediction ran.
    let running = make(json!({"image": "data:image/jpeg;base64,AA=="})).await;
    let mut request = portrait("gen_5-a2");
    request.pending_prediction = Some(running.clone());
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    let ctx = {
        let seen_ids = seen_ids.clone();
        RenderContext::new(|_, _| {}, Arc::default())
            .with_prediction_recorder(move |id| seen_ids.lock().expect("ids").push(id.to_owned()))
    };
    let studio2 = studio.clone();
    let files = tokio::task::spawn_blocking(move || studio2.render(&request, &ctx)).await.expect("thread");
    assert_eq!(files.expect("the earlier prediction's portrait")[0].bytes, FakeProvider::output_png());
    assert_eq!((fake.seen().creates.len(), fake.seen().predictions), (1, 1), "nothing created by the render");
    assert_eq!(*seen_ids.lock().expect("ids"), [running], "the followed prediction is recorded again");

    // An attempt whose prediction was canceled (its deadline passed): a new one.
    let canceled = make(json!({"image": "data:image/jpeg;base64,AA=="})).await;
    http.post(format!("{}/v1/predictions/{canceled}/cancel", fake.url))
        .bearer_auth(petportrait_tests::fake_provider::TOKEN)
        .send()
        .await
        .expect("cancel");
    let mut request = portrait("gen_6-a2");
    request.pending_prediction = Some(canceled);
    render(&studio, request, Arc::default()).await.0.expect("a portrait from a new prediction");
    assert_eq!((fake.seen().creates.len(), fake.seen().predictions), (3, 3), "one new prediction");
    assert_eq!(fake.seen().idempotency_keys.last().map(String::as_str), Some("gen_6-a2"));
}

/// A worker killed while its prediction runs: the next attempt follows the prediction
/// the first one recorded on the generation, so the provider runs (and bills) one.
async fn remote_killed_worker_prediction_is_followed_again(mode: Mode) {
    let fake = FakeProvider::start(Script { polls: 25, ..Script::default() }).await;
    let env = fake.env();
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let roles = petportrait::Roles { web: true, worker: false, scheduler: true };
    let app = TestApp::spawn_with(mode, &overrides, roles, None).await;
    let ann = app.user("Ann").await;
    let studio = petportrait_studio::from_config(&app.config).await.expect("studios");
    let doomed = petportrait_tests::DetachedWorker::start(app.config.clone(), studio.clone());
    let id = create(&ann).await;
    let generation = petportrait_core::ids::GenerationId::parse(&id).expect("generation id");
    let recorded = wait_until("the prediction to be recorded", Duration::from_secs(30), || async {
        let row = app.services.db.get_generation(&generation).await.expect("read").expect("row");
        row.model_prediction
    })
    .await;
    doomed.kill();
    let survivor = petportrait_tests::DetachedWorker::start(app.config.clone(), studio);
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let seen = fake.seen();
    assert_eq!((seen.creates.len(), seen.predictions), (1, 1), "one prediction for two attempts");
    assert_eq!(recorded, "fake0001");
    let row = app.services.db.get_generation(&generation).await.expect("read").expect("row");
    assert_eq!((row.attempts, row.model_prediction.as_deref()), (2, Some("fake0001")));
    assert_eq!(ledger_kinds(&ann).await, ["charge", "hold", "grant"], "charged once");
    survivor.kill();
    app.stop().await;
}
