//! `GET /healthz` (alive) and `GET /readyz` (database, queue and object store answer).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let limit = Duration::from_secs(2);
    let s = &state.services;
    let (db, queue, store) = tokio::join!(
        tokio::time::timeout(limit, s.db.ping()),
        tokio::time::timeout(limit, s.queue.ping()),
        tokio::time::timeout(limit, s.store.ping()),
    );
    let db = matches!(db, Ok(Ok(())));
    let queue = matches!(queue, Ok(Ok(())));
    let store = matches!(store, Ok(Ok(())));
    let status = if db && queue && store { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"database": db, "queue": queue, "object_store": store})))
}
