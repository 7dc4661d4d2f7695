//! A fake of Stripe's API for the tests, on 127.0.0.1:0: `POST /v1/checkout/sessions`
//! records each request (its form fields and headers) and answers a session, or a
//! server error when told to. Events are signed and posted by the tests themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;

/// One Checkout Session request as Stripe received it.
#[derive(Clone, Debug)]
pub struct SessionRequest {
    pub form: HashMap<String, String>,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
}

#[derive(Default)]
struct Seen {
    requests: Vec<SessionRequest>,
    failing: bool,
    /// Sessions by idempotency key, as Stripe replays them.
    by_key: HashMap<String, String>,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub base_url: String,
    seen: Arc<Mutex<Seen>>,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake Stripe");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new().route("/v1/checkout/sessions", post(create_session)).with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeStripe { base_url, seen }
    }

    pub fn requests(&self) -> Vec<SessionRequest> {
        self.seen.lock().expect("seen").requests.clone()
    }

    /// From now on, answer every call with a 500.
    pub fn fail(&self, failing: bool) {
        self.seen.lock().expect("seen").failing = failing;
    }
}

async fn create_session(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut seen = seen.lock().expect("seen");
    let request = SessionRequest {
        form,
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
    };
    seen.requests.push(request.clone());
    if seen.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "down"}}))).into_response();
    }
    let fresh = format!("cs_test_{}", seen.requests.len());
    let id = match &request.idempotency_key {
        Some(key) => seen.by_key.entry(key.clone()).or_insert(fresh).clone(),
        None => fresh,
    };
    axum::Json(
        json!({"id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.com/c/pay/{id}")}),
    )
    .into_response()
}
