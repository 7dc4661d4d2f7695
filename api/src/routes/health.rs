//! `GET /healthz` (alive) and `GET /readyz` (database, queue and object store answer;
//! and, for information, which kinds have a model ready: a kind on Cog servers that
//! are all down makes the API no less ready to serve everything else).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::AppState;
use petportrait_core::domain::GenerationKind;

/// `{database, queue, object_store, models}`: which dependency answers, and which
/// kinds have a model ready.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body `readyz` builds with `json!`.
pub struct Readiness {
    database: bool,
    queue: bool,
    object_store: bool,
    /// Per kind (`portrait`, `music`, `sculpture`): whether a model can run it now.
    models: std::collections::BTreeMap<String, bool>,
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses(
    (status = 200, description = "The process is alive", body = String, content_type = "text/plain"),
))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The database, queue and object store answer", body = Readiness),
    (status = 503, description = "One of them does not answer", body = Readiness, content_type = "application/json"),
))]
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
    let mut models = serde_json::Map::new();
    for kind in GenerationKind::ALL {
        let ready = match tokio::time::timeout(limit, crate::models::available_styles(&state.models, &s.db, kind)).await
        {
            Ok(Ok(None)) => true,
            Ok(Ok(Some(styles))) => !styles.is_empty(),
            _ => false,
        };
        models.insert(kind.as_str().to_owned(), ready.into());
    }
    (status, Json(json!({"database": db, "queue": queue, "object_store": store, "models": models})))
}
