//! Webhooks sent by the platform: Standard Webhooks signatures checked by the reference
//! library (PyPI `standardwebhooks`), per-generation webhooks with the account secret
//! through a rotation, account endpoints with their own secrets, retries on a shortened
//! schedule, 410, an endpoint that never answers, redirects, the delivery log,
//! redelivery, the scheduler's catch-up and purge, and SSRF refusals.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use petportrait_core::outbound::Outbound;
use petportrait_core::time::{now_ms, parse_rfc3339};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::receiver::{Answer, Received, Receiver};
use petportrait_tests::verifier::{assert_verified, verify};
use petportrait_tests::{Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);
/// Deliveries reach the test's receiver on loopback; attempts follow a schedule of
/// milliseconds instead of hours.
const WEBHOOK_VARS: [(&str, &str); 2] =
    [("WEBHOOK_ALLOW_PRIVATE", "true"), ("WEBHOOK_RETRY_SCHEDULE", "0,200ms,300ms")];

async fn create_with_webhook(client: &petportrait_tests::client::Client, upload: &str, body: Value) -> Value {
    let mut request = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"});
    request.as_object_mut().expect("object").extend(body.as_object().expect("object").clone());
    let (status, created) = client.post_json("/v1/generations", &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    created
}

fn of_generation<'a>(messages: &'a [Received], id: &str) -> Vec<&'a Received> {
    messages.iter().filter(|m| m.json()["data"]["id"] == id).collect()
}

all_modes!(generation_webhooks_verify_through_a_rotation, generation_webhooks_verify_through_a_rotation);

async fn generation_webhooks_verify_through_a_rotation(mode: Mode) {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn(mode, &WEBHOOK_VARS).await;
    let ann = app.user("Hooked").await;
    let (status, first_secret) = ann.get("/v1/me/webhook-secret").await;
    assert_eq!(status, StatusCode::OK, "{first_secret}");
    let old = first_secret["secret"].as_str().expect("a secret").to_owned();
    assert!(old.starts_with("whsec_"), "{old}");
    let (_, again) = ann.get("/v1/me/webhook-secret").await;
    assert_eq!(again["secret"], old.as_str(), "the secret is stable until rotated");

    let upload = ann.upload_ok(pet_jpeg()).await;
    let url = receiver.path("all", Answer::Ok);
    let created = create_with_webhook(&ann, &upload, json!({"webhook": url})).await;
    let id = created["id"].as_str().expect("id").to_owned();
    receiver.wait_for("all", 1, |m| m.event_type() == "generation.succeeded").await;
    let messages = receiver.received("all");
    let types: Vec<String> = messages.iter().map(Received::event_type).collect();
    for wanted in ["generation.started", "generation.progress", "generation.succeeded"] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} missing from {types:?}");
    }
    assert_eq!(types.iter().filter(|t| *t == "generation.started").count(), 1, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "generation.succeeded").count(), 1, "{types:?}");
    // Progress events of one generation are at least 500 ms apart.
    let mut progress_times: Vec<i64> = messages
        .iter()
        .filter(|m| m.event_type() == "generation.progress")
        .map(|m| parse_rfc3339(m.json()["timestamp"].as_str().expect("timestamp")).expect("RFC 3339"))
        .collect();
    progress_times.sort_unstable();
    assert!(progress_times.windows(2).all(|w| w[1] - w[0] >= 500), "{progress_times:?}");
    let ids: HashSet<&str> = messages.iter().map(|m| m.header("webhook-id")).collect();
    assert_eq!(ids.len(), messages.len(), "every message has its own webhook-id");
    let succeeded = messages.iter().find(|m| m.event_type() == "generation.succeeded").expect("succeeded");
    let data = &succeeded.json()["data"];
    assert_eq!(data["id"], id.as_str());
    assert_eq!(data["status"], "succeeded");
    let public = &app.config.public_url;
    assert_eq!(data["urls"]["self"], format!("{public}/v1/generations/{id}"), "links are absolute");
    assert!(data["outputs"][0]["url"].as_str().expect("an output").starts_with(public.as_str()), "{data}");
    assert_eq!(succeeded.header("content-type"), "application/json");
    assert_verified(&old, &messages);

    // Rotation: the new secret signs at once, the old one still does during the overlap.
    let (status, rotated) = ann.post_json("/v1/me/webhook-secret/rotate", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().expect("a secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previous_secrets_expire_at"].as_array().map(Vec::len), Some(1), "{rotated}");
    let filtered = receiver.path("completed", Answer::Ok);
    let second =
        create_with_webhook(&ann, &upload, json!({"webhook": filtered, "webhook_events_filter": ["completed"]})).await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    ann.wait_terminal(&second_id, DEADLINE).await;
    let only = receiver.wait_for("completed", 1, |_| true).await;
    assert_eq!(only[0].event_type(), "generation.succeeded", "the filter lets only the end through");
    assert_eq!(only[0].header("webhook-signature").split(' ').count(), 2, "one signature per secret in force");
    assert_verified(&new, &only);
    assert_verified(&old, &only);
    // A secret that never was ours verifies nothing.
    let stranger = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verify(stranger, &only).iter().all(|v| v.starts_with("error")), "a foreign secret verified");
    // Tampering with the body breaks the signature.
    let mut tampered = only[0].clone();
    tampered.body = tampered.body.replace("succeeded", "failed");
    assert!(verify(&new, &[tampered])[0].starts_with("error"));
    // Nothing more came for the second generation after it ended.
    assert_eq!(of_generation(&receiver.received("completed"), &second_id).len(), 1);
    app.stop().await;
}

/// An account endpoint and its delivery log, with the id of its one delivery.
async fn delivery_log(client: &petportrait_tests::client::Client, endpoint: &str) -> Vec<Value> {
    let (status, page) = client.get(&format!("/v1/webhook-endpoints/{endpoint}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().expect("data").clone()
}

async fn register(client: &petportrait_tests::client::Client, url: &str, events: &[&str]) -> Value {
    let (status, endpoint) = client.post_json("/v1/webhook-endpoints", &json!({"url": url, "events": events})).await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    endpoint
}

all_modes!(endpoints_retry_log_and_redeliver, endpoints_retry_log_and_redeliver);

async fn endpoints_retry_log_and_redeliver(mode: Mode) {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn(mode, &WEBHOOK_VARS).await;
    let ann = app.user("Integrator").await;
    let flaky = receiver.path("flaky", Answer::FailTimes { times: 2, status: 503, retry_after: Some(1) });
    let endpoint = register(&ann, &flaky, &["generation.succeeded", "generation.succeeded"]).await;
    let endpoint_id = endpoint["id"].as_str().expect("id").to_owned();
    let secret = endpoint["secret"].as_str().expect("its own secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(endpoint["events"], json!(["generation.succeeded"]));
    let (_, list) = ann.get("/v1/webhook-endpoints").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    assert!(list["data"][0].get("secret").is_none(), "lists never show the secret: {list}");

    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let attempts = receiver.wait_for("flaky", 3, |_| true).await;
    let webhook_ids: HashSet<&str> = attempts.iter().map(|m| m.header("webhook-id")).collect();
    assert_eq!(webhook_ids.len(), 1, "the webhook-id is stable across retries");
    assert!(attempts.iter().all(|m| m.body == attempts[0].body), "every attempt sends the same body");
    // Retry-After: 1 was honoured (the schedule alone says 200 ms).
    assert!(attempts[1].at - attempts[0].at >= Duration::from_secs(1), "{:?}", attempts[1].at - attempts[0].at);
    assert_eq!(attempts[0].json()["data"]["id"], id.as_str());
    assert_verified(&secret, &attempts);

    let log = wait_until("the delivery to be logged as succeeded", DEADLINE, || async {
        let log = delivery_log(&ann, &endpoint_id).await;
        (log.len() == 1 && log[0]["status"] == "succeeded").then_some(log)
    })
    .await;
    let delivery = &log[0];
    assert_eq!(delivery["id"], attempts[0].header("webhook-id"));
    assert_eq!(delivery["event_type"], "generation.succeeded");
    let codes: Vec<i64> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(codes, [503, 503, 200], "{delivery}");
    assert_eq!(delivery["attempts"][0]["response_excerpt"], "try again later");
    assert!(delivery["attempts"][2]["duration_ms"].as_i64().is_some());
    assert!(!delivery.to_string().contains(&secret[6..]), "the log shows no secret");

    // Redelivery: one more attempt with the same id and body.
    let delivery_id = delivery["id"].as_str().expect("id").to_owned();
    let (status, _) = ann.post_json(&format!("/v1/webhook-deliveries/{delivery_id}/retry"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let again = receiver.wait_for("flaky", 4, |_| true).await;
    assert_eq!(again[3].header("webhook-id"), delivery_id);
    assert_eq!(again[3].body, attempts[0].body);
    wait_until("four attempts logged", DEADLINE, || async {
        let log = delivery_log(&ann, &endpoint_id).await;
        (log[0]["attempts"].as_array().map(Vec::len) == Some(4) && log[0]["status"] == "succeeded").then_some(())
    })
    .await;
    // A pending delivery whose job was lost (made due long ago, no job pushed) is found
    // by the scheduler and pushed again.
    let stranded =
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = 1, completed_at = NULL WHERE id = $1";
    app.raw_execute(stranded, &[&delivery_id]).await;
    // Two hours on: past the lease the app's own scheduler took at start.
    let later = now_ms() + 2 * 3_600_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "test", later).await.expect("tick");
    assert_eq!(report.webhooks.deliveries_requeued, 1, "{report:?}");
    let found = receiver.wait_for("flaky", 5, |_| true).await;
    assert_eq!(found[4].header("webhook-id"), delivery_id);
    // Another user can neither read the log nor redeliver.
    let bob = app.user("Bob").await;
    assert_eq!(bob.get(&format!("/v1/webhook-endpoints/{endpoint_id}/deliveries")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.post_json(&format!("/v1/webhook-deliveries/{delivery_id}/retry"), &json!({})).await.0,
        StatusCode::NOT_FOUND
    );

    // The scheduler purges the log after 30 days (read with a token: the tick also ends
    // the month-old session), and announces what a stopped process did not: marks reset
    // behind the app's back make the events again.
    let (_, token) = ann.post_json("/v1/me/tokens", &json!({"name": "log reader"})).await;
    let token = token["token"].as_str().expect("a token").to_owned();
    let tick_at = now_ms() + 31 * 86_400_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "test", tick_at).await.expect("tick");
    assert_eq!(report.webhooks.deliveries_purged, 1, "{report:?}");
    let response = reqwest::Client::new()
        .get(ann.url(&format!("/v1/webhook-endpoints/{endpoint_id}/deliveries")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET the log");
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.expect("JSON");
    assert_eq!(page["data"], json!([]), "the purged log is empty");
    app.raw_execute("UPDATE generations SET webhook_stage = 0 WHERE id = $1", &[&id]).await;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "test", tick_at + 60_000).await.expect("tick");
    assert_eq!(report.webhooks.generations_announced, 1, "{report:?}");
    let redone = receiver.wait_for("flaky", 6, |_| true).await;
    assert_eq!(redone[5].event_type(), "generation.succeeded");
    assert_ne!(redone[5].header("webhook-id"), delivery_id, "a new message");
    app.stop().await;
}

all_modes!(gone_silent_and_redirecting_endpoints, gone_silent_and_redirecting_endpoints);

async fn gone_silent_and_redirecting_endpoints(mode: Mode) {
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let vars = [
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_SCHEDULE", "0,100ms"),
        ("WEBHOOK_TIMEOUT", "3s"),
        ("WEBHOOK_DISABLE_AFTER", "1ms"),
    ];
    let app = TestApp::spawn(mode, &vars).await;
    let ann = app.user("Operator").await;
    let events = ["generation.started", "generation.succeeded"];
    let gone = register(&ann, &receiver.path("gone", Answer::Gone), &events).await;
    let silent = register(&ann, &receiver.path("silent", Answer::Hang), &events).await;
    let target = elsewhere.path("internal", Answer::Ok);
    let moved = register(&ann, &receiver.path("moved", Answer::Redirect(target)), &["generation.succeeded"]).await;
    let healthy = register(&ann, &receiver.path("healthy", Answer::Ok), &events).await;

    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let id = created["id"].as_str().expect("id").to_owned();
    ann.wait_terminal(&id, DEADLINE).await;

    // The healthy endpoint gets both events while the silent one holds its attempts open.
    let got = receiver.wait_for("healthy", 2, |_| true).await;
    let first_silent = receiver.wait_for("silent", 1, |_| true).await[0].at;
    let last_healthy = got.iter().map(|m| m.at).max().expect("two");
    assert!(last_healthy < first_silent + Duration::from_secs(3), "a silent endpoint delayed a healthy one");

    // 410: one attempt, then the endpoint is disabled and says why.
    let gone_id = gone["id"].as_str().expect("id");
    let disabled = wait_until("the gone endpoint to be disabled", DEADLINE, || async {
        let (_, endpoint) = ann.get(&format!("/v1/webhook-endpoints/{gone_id}")).await;
        (endpoint["enabled"] == false).then_some(endpoint)
    })
    .await;
    assert!(disabled["disabled_reason"].as_str().expect("a reason").contains("410"), "{disabled}");
    // The end was announced after the 410 or before it: one delivery or two, each failed
    // after at most one attempt (the other may have been in flight when the 410 came).
    let gone_log = wait_until("the deliveries to the gone endpoint to fail", DEADLINE, || async {
        let log = delivery_log(&ann, gone_id).await;
        (!log.is_empty() && log.iter().all(|d| d["status"] == "failed")).then_some(log)
    })
    .await;
    assert!(gone_log.iter().all(|d| d["attempts"].as_array().map_or(0, Vec::len) <= 1), "{gone_log:?}");
    assert!(receiver.received("gone").len() <= gone_log.len());

    // Never answering: each attempt ends at the timeout, two attempts on this schedule;
    // failing past WEBHOOK_DISABLE_AFTER disables it too.
    let silent_id = silent["id"].as_str().expect("id");
    let silent_log = wait_until("the silent endpoint's deliveries to fail", DEADLINE, || async {
        let log = delivery_log(&ann, silent_id).await;
        (log.len() == 2 && log.iter().all(|d| d["status"] == "failed")).then_some(log)
    })
    .await;
    let first_attempt =
        &silent_log.iter().find(|d| d["attempts"].as_array().map_or(0, Vec::len) >= 1).expect("an attempt")["attempts"]
            [0];
    assert_eq!(first_attempt["status_code"], Value::Null);
    assert!(first_attempt["error"].as_str().expect("an error").contains("no answer within 3 s"), "{first_attempt}");
    assert!(first_attempt["duration_ms"].as_i64().expect("ms") >= 3_000);
    let (_, silent_now) = ann.get(&format!("/v1/webhook-endpoints/{silent_id}")).await;
    assert_eq!(silent_now["enabled"], false, "{silent_now}");
    assert!(silent_now["disabled_reason"].as_str().expect("a reason").contains("every attempt failed"), "{silent_now}");

    // A redirect is an answer, never followed: the target sees nothing.
    let moved_id = moved["id"].as_str().expect("id");
    let moved_log = wait_until("the redirected delivery to fail", DEADLINE, || async {
        let log = delivery_log(&ann, moved_id).await;
        (log.len() == 1 && log[0]["status"] == "failed").then_some(log)
    })
    .await;
    assert_eq!(moved_log[0]["attempts"][0]["status_code"], 302);
    assert!(elsewhere.received("internal").is_empty(), "a redirect was followed");

    // A disabled endpoint gets no new deliveries, can be turned back on, and redelivers.
    let (status, _) = ann
        .post_json(&format!("/v1/webhook-deliveries/{}/retry", gone_log[0]["id"].as_str().expect("id")), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let request = ann.http.patch(ann.url(&format!("/v1/webhook-endpoints/{gone_id}"))).json(&json!({"enabled": true}));
    let enabled: Value = request.send().await.expect("PATCH").json().await.expect("JSON");
    assert_eq!(enabled["enabled"], true, "{enabled}");
    assert_eq!(healthy["enabled"], true);
    let response =
        ann.http.delete(ann.url(&format!("/v1/webhook-endpoints/{silent_id}"))).send().await.expect("DELETE");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(ann.get(&format!("/v1/webhook-endpoints/{silent_id}")).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// A webhook client that resolves `internal.test` to a private address, as a hostile
/// DNS answer would, and `public.test` to a public one (the machine has no DNS).
fn resolving_internally() -> Outbound {
    let hosts: HashMap<String, Vec<IpAddr>> = HashMap::from([
        ("internal.test".to_owned(), vec!["10.1.2.3".parse().expect("ip")]),
        // A public address (documentation ranges are refused), never connected to here.
        ("public.test".to_owned(), vec!["93.184.216.34".parse().expect("ip")]),
    ]);
    Outbound::with_fixed_hosts(false, hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_at_registration_and_at_delivery() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_customized(Mode::Embedded, &[], petportrait::Roles::ALL, None, |services| {
        services.webhooks = services.webhooks.clone().with_outbound(resolving_internally());
    })
    .await;
    let ann = app.user("Attacker").await;
    let refused = [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[64:ff9b::a00:1]/hook",
        "https://localhost/hook",
        "https://internal.test/hook",
        "http://example.com/hook",
        "https://user:pass@example.com/hook",
        "file:///etc/passwd",
    ];
    for url in refused {
        let (status, problem) =
            ann.post_json("/v1/webhook-endpoints", &json!({"url": url, "events": ["generation.succeeded"]})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["code"], "invalid_webhook_url", "{url}");
    }
    let upload = ann.upload_ok(pet_jpeg()).await;
    for url in ["https://127.0.0.1/hook", "https://internal.test/hook"] {
        let request = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor", "webhook": url});
        let (status, problem) = ann.post_json("/v1/generations", &request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["code"], "invalid_webhook_url");
    }
    let bad_filter =
        json!({"kind": "portrait", "upload_id": upload, "style": "watercolor", "webhook_events_filter": ["completed"]});
    assert_eq!(ann.post_json("/v1/generations", &bad_filter).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = json!({"url": "https://example.com/hook", "events": ["generation.exploded"]});
    assert_eq!(ann.post_json("/v1/webhook-endpoints", &unknown).await.1["code"], "unknown_event_type");
    assert_eq!(ann.available_credits().await, 10, "nothing was created or held");

    // Checked again at each delivery: an endpoint whose stored URL now names an internal
    // address (a rebound name, a row changed behind the API's back) is never reached.
    let endpoint = register(&ann, "https://public.test/hook", &["generation.started"]).await;
    let endpoint_id = endpoint["id"].as_str().expect("id");
    let literal = register(&ann, "https://public.test/other", &["generation.started"]).await;
    let literal_id = literal["id"].as_str().expect("id");
    app.raw_execute("UPDATE webhook_endpoints SET url = 'https://internal.test/hook' WHERE id = $1", &[endpoint_id])
        .await;
    let internal = receiver.path("internal", Answer::Ok).replace("http://", "https://");
    app.raw_execute("UPDATE webhook_endpoints SET url = $1 WHERE id = $2", &[&internal, literal_id]).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    ann.wait_terminal(created["id"].as_str().expect("id"), DEADLINE).await;
    for id in [endpoint_id, literal_id] {
        let log = wait_until("the delivery to be refused", DEADLINE, || async {
            let log = delivery_log(&ann, id).await;
            (log.len() == 1 && log[0]["status"] == "failed").then_some(log)
        })
        .await;
        assert_eq!(log[0]["attempts"].as_array().map(Vec::len), Some(1), "a refusal is not retried");
        let error = log[0]["attempts"][0]["error"].as_str().expect("an error");
        assert!(error.contains("not allowed"), "{error}");
    }
    assert!(receiver.received("internal").is_empty(), "an internal address was reached");
    app.stop().await;
}

all_modes!(a_burst_to_one_endpoint_is_delivered_promptly, a_burst_to_one_endpoint_is_delivered_promptly);

/// More deliveries than one endpoint may have in flight: each finished attempt hands its
/// slot on, so none waits for the lease of another (25 s here) to run out.
async fn a_burst_to_one_endpoint_is_delivered_promptly(mode: Mode) {
    let receiver = Receiver::start().await;
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let (studio, release) = petportrait_tests::studios::StallingStudio::new();
    let vars = [("WEBHOOK_ALLOW_PRIVATE", "true"), ("STARTER_CREDITS", "100"), ("WORKER_CONCURRENCY", "1")];
    let app = TestApp::spawn_with(mode, &vars, roles, Some(studio)).await;
    let ann = app.user("Burst").await;
    register(&ann, &receiver.path("burst", Answer::Ok), &["generation.canceled"]).await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(ann.create_portrait(&upload, "pencil_sketch").await["id"].as_str().expect("id").to_owned());
    }
    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/generations/{id}/cancel")).collect();
    let empty = json!({});
    let cancels = paths.iter().map(|path| ann.post_json(path, &empty));
    for (status, body) in futures::future::join_all(cancels).await {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    wait_until("eight deliveries well within one lease", Duration::from_secs(10), || async {
        (receiver.received("burst").len() >= 8).then_some(())
    })
    .await;
    let delivered: HashSet<String> = receiver
        .received("burst")
        .iter()
        .map(|m| m.json()["data"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(delivered, ids.into_iter().collect::<HashSet<_>>());
    release.send(()).expect("release the stalled render");
    app.stop().await;
}

/// The webhook routes: anonymous calls are 401, another user's ids 404, bad bodies a
/// problem+json 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_routes_refuse_strangers_and_bad_bodies() {
    let app = TestApp::spawn(Mode::Embedded, &WEBHOOK_VARS).await;
    let ann = app.user("Owner").await;
    let receiver = Receiver::start().await;
    let endpoint = register(&ann, &receiver.path("mine", Answer::Ok), &["generation.succeeded"]).await;
    let id = endpoint["id"].as_str().expect("id");
    let anonymous = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/me/webhook-secret".to_owned()),
        (reqwest::Method::POST, "/v1/me/webhook-secret/rotate".to_owned()),
        (reqwest::Method::GET, "/v1/webhook-endpoints".to_owned()),
        (reqwest::Method::GET, format!("/v1/webhook-endpoints/{id}/deliveries")),
        (reqwest::Method::DELETE, format!("/v1/webhook-endpoints/{id}")),
    ] {
        let response = anonymous.request(method.clone(), ann.url(&path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let bob = app.user("Stranger").await;
    assert_eq!(bob.get(&format!("/v1/webhook-endpoints/{id}")).await.0, StatusCode::NOT_FOUND);
    let response = bob.http.delete(bob.url(&format!("/v1/webhook-endpoints/{id}"))).send().await.expect("DELETE");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response =
        bob.http.patch(bob.url(&format!("/v1/webhook-endpoints/{id}"))).json(&json!({"enabled": true})).send().await;
    assert_eq!(response.expect("PATCH").status(), StatusCode::NOT_FOUND);
    assert_eq!(bob.get("/v1/webhook-endpoints").await.1["data"], json!([]));
    assert_eq!(ann.get("/v1/webhook-endpoints/whe_nonsense").await.0, StatusCode::NOT_FOUND);

    for body in
        [json!({"url": receiver.base_url}), json!({"url": 5, "events": []}), json!({"events": ["generation.started"]})]
    {
        let response = ann.http.post(ann.url("/v1/webhook-endpoints")).json(&body).send().await.expect("POST");
        assert!(response.status().is_client_error(), "{body}: {}", response.status());
        assert_eq!(response.headers().get("content-type").expect("type"), "application/problem+json");
    }
    let none = json!({"url": receiver.path("none", Answer::Ok), "events": []});
    assert_eq!(ann.post_json("/v1/webhook-endpoints", &none).await.1["code"], "unknown_event_type");
    let disable = ann.http.patch(ann.url(&format!("/v1/webhook-endpoints/{id}"))).json(&json!({"enabled": false}));
    assert_eq!(disable.send().await.expect("PATCH").status(), StatusCode::UNPROCESSABLE_ENTITY);
    let long = json!({"url": format!("https://example.com/{}", "a".repeat(2100)), "events": ["generation.started"]});
    assert_eq!(ann.post_json("/v1/webhook-endpoints", &long).await.1["code"], "invalid_webhook_url");
    app.stop().await;
}
