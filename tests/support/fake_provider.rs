//! A fake model provider speaking Replicate's predictions protocol, started by a test
//! on 127.0.0.1:0: `POST /v1/predictions`, `GET /v1/predictions` (the list, newest
//! first, two per page), `GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel`,
//! and the output files under `/files/`. Like Replicate, it ignores `Idempotency-Key`:
//! every create that reaches it makes a prediction.
//!
//! What it does is scripted by the test ([`Script`], applied to the predictions created
//! after it is set), and it records what it saw ([`Seen`]): requests, idempotency keys,
//! cancels, the most predictions running at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The token the fake expects (`PROVIDER_TOKEN`).
pub const TOKEN: &str = "fake-token";

/// How a prediction ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `succeeded`, with one PNG output ([`FakeProvider::output_png`]).
    Succeed,
    /// `succeeded`, but the output is served as `text/html`.
    SucceedWithHtml,
    /// `succeeded`, but the output's URL answers 404 (an expired delivery link).
    SucceedWithMissingOutput,
    /// `succeeded`, with this output URL verbatim (where a provider must not send us).
    SucceedAt(String),
    /// `succeeded`, but the output's URL answers 302 to the cloud metadata service.
    SucceedWithRedirect,
    /// `failed` with a content-policy error (Replicate's wording).
    ContentPolicy,
    /// `failed` with this error.
    Fail(String),
    /// `processing` for ever (until canceled).
    Never,
    /// `canceled`, without anybody asking.
    CanceledByProvider,
}

/// What the fake does; counters (`create_503`, …) count down from when it is set.
#[derive(Clone, Debug)]
pub struct Script {
    /// Polls answered `processing` (with a tqdm bar in `logs`) before the outcome.
    pub polls: u32,
    pub outcome: Outcome,
    /// Processing polls carry no progress bar in `logs` (a model that reports nothing),
    /// so the worker writes no progress and sees a cancel only at its next heartbeat.
    pub quiet: bool,
    /// The next creates answer 503 without creating anything.
    pub create_503: u32,
    /// The next creates do create the prediction, then answer 502 (a lost answer).
    pub create_lost: u32,
    /// The next creates answer 500 without creating anything.
    pub create_500: u32,
    /// The next creates answer 429 with this `Retry-After`.
    pub create_429: u32,
    pub retry_after: &'static str,
    /// The next polls answer 500.
    pub poll_500: u32,
    /// Every create answers this status (and body) until the script changes.
    pub create_always: Option<(u16, Value)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            polls: 2,
            outcome: Outcome::Succeed,
            quiet: false,
            create_503: 0,
            create_lost: 0,
            create_500: 0,
            create_429: 0,
            retry_after: "1",
            poll_500: 0,
            create_always: None,
        }
    }
}

/// What the fake saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Create requests, answered or not, and when they arrived.
    pub creates: Vec<Instant>,
    /// Predictions actually created.
    pub predictions: usize,
    /// `Idempotency-Key` of every create request, in order.
    pub idempotency_keys: Vec<String>,
    /// The `input` of every prediction created.
    pub inputs: Vec<Value>,
    /// `Cancel-After` of every create request.
    pub cancel_after: Vec<String>,
    pub polls: usize,
    /// Reads of the list of predictions.
    pub lists: usize,
    pub downloads: usize,
    /// Prediction ids whose cancel was asked for, in order.
    pub cancels: Vec<String>,
    /// Requests without the right bearer token.
    pub unauthorized: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
}

struct Prediction {
    id: String,
    status: &'static str,
    polls_left: u32,
    polls_total: u32,
    quiet: bool,
    outcome: Outcome,
    input: Value,
    error: Value,
    output: Value,
    created_at: String,
}

struct Inner {
    script: Script,
    seen: Seen,
    predictions: HashMap<String, Prediction>,
    next: u64,
}

struct Shared {
    base: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake; stops when dropped.
pub struct FakeProvider {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts the fake on a free port of 127.0.0.1 with `script`.
    pub async fn start(script: Script) -> FakeProvider {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake provider");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            base: url.clone(),
            inner: Mutex::new(Inner { script, seen: Seen::default(), predictions: HashMap::new(), next: 0 }),
        });
        let app = Router::new()
            .route("/v1/predictions", post(create).get(list))
            .route("/v1/predictions/{id}", get(poll))
            .route("/v1/predictions/{id}/cancel", post(cancel))
            .route("/files/{id}/{name}", get(file))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider { url, shared, task }
    }

    /// Replaces the script (and its counters) for what comes next.
    pub fn script(&self, script: Script) {
        self.shared.lock().script = script;
    }

    pub fn seen(&self) -> Seen {
        self.shared.lock().seen.clone()
    }

    /// The configuration that points a `RemoteStudio` (portraits) at this fake, with
    /// fast polls and retries.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MODEL_PORTRAIT", "remote".into()),
            ("PROVIDER_URL", self.url.clone()),
            ("PROVIDER_TOKEN", TOKEN.into()),
            ("PROVIDER_MODEL", "acme/pet-portraits:0123abcd".into()),
            ("PROVIDER_POLL_INTERVAL", "20ms".into()),
            ("PROVIDER_POLL_MAX_INTERVAL", "50ms".into()),
            ("PROVIDER_RETRY_DELAY", "20ms".into()),
            ("PROVIDER_REQUEST_TIMEOUT", "5s".into()),
            // The fake serves its outputs on loopback too.
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ]
    }

    /// The PNG every succeeded prediction serves.
    pub fn output_png() -> Vec<u8> {
        let image = image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, 200]));
        let mut out = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("encode the output");
        out
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn authorized(inner: &mut Inner, headers: &HeaderMap) -> bool {
    let ok = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !ok {
        inner.seen.unauthorized += 1;
    }
    ok
}

fn problem(status: u16, detail: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"title": status.canonical_reason(), "detail": detail, "status": status.as_u16()})))
        .into_response()
}

fn view(base: &str, p: &Prediction) -> Value {
    let done = p.polls_total - p.polls_left;
    let percent = (done * 100).checked_div(p.polls_total).unwrap_or(100);
    json!({
        "id": p.id,
        "model": "acme/pet-portraits",
        "version": "0123abcd",
        "status": p.status,
        "input": p.input,
        "output": p.output,
        "error": p.error,
        "logs": if p.quiet {
            String::new()
        } else {
            format!("loading weights\n{percent:3}%|{:<10}| {done}/{}\n", "#".repeat((percent / 10) as usize), p.polls_total)
        },
        "created_at": p.created_at,
        "data_removed": false,
        "urls": {
            "get": format!("{base}/v1/predictions/{}", p.id),
            "cancel": format!("{base}/v1/predictions/{}/cancel", p.id),
            "web": format!("{base}/p/{}", p.id),
        },
    })
}

async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut inner = shared.lock();
    inner.seen.creates.push(Instant::now());
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    inner.seen.idempotency_keys.push(key.clone());
    let cancel_after = headers.get("cancel-after").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    inner.seen.cancel_after.push(cancel_after);
    if !authorized(&mut inner, &headers) {
        return problem(401, "missing or wrong token");
    }
    if inner.script.create_429 > 0 {
        inner.script.create_429 -= 1;
        let retry_after = inner.script.retry_after;
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after)], "slow down").into_response();
    }
    if inner.script.create_503 > 0 {
        inner.script.create_503 -= 1;
        return problem(503, "warming up");
    }
    if inner.script.create_500 > 0 {
        inner.script.create_500 -= 1;
        return problem(500, "internal error (nothing was created)");
    }
    if let Some((status, body)) = inner.script.create_always.clone() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(body)).into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else { return problem(400, "not JSON") };
    if request["version"].as_str().is_none() || !request["input"].is_object() {
        return problem(422, "version and input are required");
    }
    inner.next += 1;
    let id = format!("fake{:04}", inner.next);
    let prediction = Prediction {
        id: id.clone(),
        status: "starting",
        polls_left: inner.script.polls,
        polls_total: inner.script.polls,
        quiet: inner.script.quiet,
        outcome: inner.script.outcome.clone(),
        input: request["input"].clone(),
        error: Value::Null,
        output: Value::Null,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let view = view(&shared.base, &prediction);
    inner.predictions.insert(id.clone(), prediction);
    inner.seen.predictions += 1;
    inner.seen.inputs.push(request["input"].clone());
    inner.seen.in_flight += 1;
    inner.seen.max_in_flight = inner.seen.max_in_flight.max(inner.seen.in_flight);
    if inner.script.create_lost > 0 {
        inner.script.create_lost -= 1;
        return problem(502, "bad gateway (the prediction was created)");
    }
    (StatusCode::CREATED, axum::Json(view)).into_response()
}

/// `GET /v1/predictions[?page=N]`: newest first, two per page, `next` while more remain.
async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.lock();
    inner.seen.lists += 1;
    if !authorized(&mut inner, &headers) {
        return problem(401, "missing or wrong token");
    }
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut all: Vec<&Prediction> = inner.predictions.values().collect();
    all.sort_by(|a, b| b.id.cmp(&a.id));
    let results: Vec<Value> = all.iter().skip(page * 2).take(2).map(|p| view(&shared.base, p)).collect();
    let next = (all.len() > (page + 1) * 2).then(|| format!("{}/v1/predictions?page={}", shared.base, page + 1));
    (StatusCode::OK, axum::Json(json!({"results": results, "next": next, "previous": null}))).into_response()
}

async fn poll(State(shared): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    inner.seen.polls += 1;
    if !authorized(&mut inner, &headers) {
        return problem(401, "missing or wrong token");
    }
    if inner.script.poll_500 > 0 {
        inner.script.poll_500 -= 1;
        return problem(500, "internal error");
    }
    let Some(p) = inner.predictions.get_mut(&id) else { return problem(404, "no such prediction") };
    let mut ended = false;
    if matches!(p.status, "starting" | "processing") {
        p.status = "processing";
        if p.polls_left > 0 {
            p.polls_left -= 1;
        } else {
            ended = true;
            match p.outcome.clone() {
                Outcome::Succeed => {
                    p.status = "succeeded";
                    p.output = json!([format!("{}/files/{id}/portrait.png", shared.base)]);
                }
                Outcome::SucceedWithHtml => {
                    p.status = "succeeded";
                    p.output = json!([format!("{}/files/{id}/page.html", shared.base)]);
                }
                Outcome::SucceedWithMissingOutput => {
                    p.status = "succeeded";
                    p.output = json!([format!("{}/files/expired/portrait.png", shared.base)]);
                }
                Outcome::SucceedAt(url) => {
                    p.status = "succeeded";
                    p.output = json!([url]);
                }
                Outcome::SucceedWithRedirect => {
                    p.status = "succeeded";
                    p.output = json!([format!("{}/files/{id}/redirect.png", shared.base)]);
                }
                Outcome::ContentPolicy => {
                    p.status = "failed";
                    p.error = json!("NSFW content detected. Your input was flagged as sensitive (E005).");
                }
                Outcome::Fail(error) => {
                    p.status = "failed";
                    p.error = json!(error);
                }
                Outcome::Never => {
                    ended = false;
                    p.polls_left = 0;
                }
                Outcome::CanceledByProvider => p.status = "canceled",
            }
        }
    }
    let view = view(&shared.base, p);
    if ended {
        inner.seen.in_flight -= 1;
    }
    (StatusCode::OK, axum::Json(view)).into_response()
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut inner = shared.lock();
    if !authorized(&mut inner, &headers) {
        return problem(401, "missing or wrong token");
    }
    inner.seen.cancels.push(id.clone());
    let Some(p) = inner.predictions.get_mut(&id) else { return problem(404, "no such prediction") };
    let running = matches!(p.status, "starting" | "processing");
    if running {
        p.status = "canceled";
    }
    let view = view(&shared.base, p);
    if running {
        inner.seen.in_flight -= 1;
    }
    (StatusCode::OK, axum::Json(view)).into_response()
}

/// Output files are public, as Replicate's delivery URLs are: no token needed.
async fn file(State(shared): State<Arc<Shared>>, Path((id, name)): Path<(String, String)>) -> Response {
    let mut inner = shared.lock();
    inner.seen.downloads += 1;
    if !inner.predictions.contains_key(&id) {
        return problem(404, "no such file");
    }
    if name.ends_with(".html") {
        return ([(header::CONTENT_TYPE, "text/html")], "<html>not a portrait</html>").into_response();
    }
    if name == "redirect.png" {
        let to = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";
        return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    }
    ([(header::CONTENT_TYPE, "image/png")], FakeProvider::output_png()).into_response()
}
