//! A webhook receiver for the tests, on 127.0.0.1:0: records every request (headers,
//! body, when it arrived) and answers as each path is told to: 2xx, fail N times then
//! succeed, 410, a redirect, or never (the connection stays open until the test ends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::wait_until;

/// How a path answers.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    /// `status` for the first `times` requests (with `Retry-After` if given), then 200.
    FailTimes {
        times: usize,
        status: u16,
        retry_after: Option<u64>,
    },
    Gone,
    /// 302 to this URL.
    Redirect(String),
    /// No answer, ever.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }

    /// The payload's `type`.
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Inner {
    answers: HashMap<String, Answer>,
    received: Vec<Received>,
    served: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct Receiver {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().route("/{path}", post(receive)).with_state(inner.clone());
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the receiver");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base_url, inner }
    }

    /// The URL of `path` (answering `answer`).
    pub fn path(&self, path: &str, answer: Answer) -> String {
        self.lock().answers.insert(path.to_owned(), answer);
        format!("{}/{path}", self.base_url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("receiver lock")
    }

    /// Everything `path` received so far, in arrival order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.lock().received.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` has received at least `count` requests matching `filter`.
    pub async fn wait_for(&self, path: &str, count: usize, filter: impl Fn(&Received) -> bool) -> Vec<Received> {
        wait_until(&format!("{count} matching requests on /{path}"), Duration::from_secs(60), || {
            let found: Vec<Received> = self.received(path).into_iter().filter(|r| filter(r)).collect();
            async move { (found.len() >= count).then_some(found) }
        })
        .await
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut inner = inner.lock().expect("receiver lock");
        inner.received.push(Received {
            path: path.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        let served = inner.served.entry(path.clone()).or_default();
        *served += 1;
        let served = *served;
        match inner.answers.get(&path).cloned().unwrap_or(Answer::Ok) {
            Answer::FailTimes { times, status, retry_after } if served <= times => {
                Err((StatusCode::from_u16(status).expect("a status"), retry_after))
            }
            answer => Ok(answer),
        }
    };
    match answer {
        Err((status, retry_after)) => {
            let mut response = (status, "try again later").into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
        Ok(Answer::Ok | Answer::FailTimes { .. }) => (StatusCode::OK, "thanks").into_response(),
        Ok(Answer::Gone) => (StatusCode::GONE, "this endpoint is gone").into_response(),
        Ok(Answer::Redirect(to)) => (StatusCode::FOUND, [(header::LOCATION, to)], "moved").into_response(),
        Ok(Answer::Hang) => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
    }
}
