//! `GET /v1/generations/{id}/events`: Server-Sent Events with the full generation
//! object on every change. Event ids are the row's version (monotonic); the first event
//! carries a `retry:` hint; comments keep the connection alive; the stream ends after a
//! terminal state. A reconnect with `Last-Event-ID` gets the current object at once if
//! it changed meanwhile (a missed change is sent from the row, so the terminal state is
//! never lost), and a reconnect after the terminal state it already has gets 204, which
//! tells `EventSource` to stop.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use petportrait_core::db::GenerationRow;
use petportrait_core::ids::{GenerationId, UserId};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;
use crate::live::Watch;
use crate::routes::generations::build_view;

/// How long a client waits before reconnecting after the stream broke.
const RECONNECT_HINT: Duration = Duration::from_secs(2);

/// One server-sent event as it arrives: `data` is the generation object (JSON) after a
/// change, `id` its version (send it back as `Last-Event-ID` to resume).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents what `events` writes through axum's `Sse`.
pub struct GenerationEvent {
    event: Option<String>,
    id: Option<String>,
    /// The generation object, as `GET /v1/generations/{id}` answers it.
    #[schema(content_media_type = "application/json")]
    data: String,
    /// How long to wait before reconnecting, in milliseconds.
    retry: Option<i64>,
}
#[utoipa::path(get, path = "/v1/generations/{id}/events", tag = "generations", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A generation id (`gen_…`)"),
    ("Last-Event-ID" = Option<String>, Header, description = "The last event's id, to resume"),
), responses(
    (status = 200, description = "Server-sent events: `generation` events carrying the generation object as it changes, until it is terminal", body = GenerationEvent, content_type = "text/event-stream"),
    (status = 204, description = "The generation is terminal and the client has seen its last state"),
))]
pub async fn generation_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<GenerationId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let user_id = user.user_id();
    let last_seen: Option<i64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    // Registered before the row is read: a change committed after the read wakes us.
    let watch = state.live.watch(id.as_str());
    let row = state.services.db.get_generation_of_user(id.as_str(), &user_id).await?.ok_or_else(ApiError::not_found)?;
    if row.status.is_terminal() && last_seen.is_some_and(|seen| seen >= row.version) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let heartbeat = state.sse_heartbeat;
    let stream = events(Live { state, id, user_id, watch, sent: last_seen.unwrap_or(0), next: Some(row) });
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx would otherwise hold events back in their buffers.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One open stream.
struct Live {
    state: AppState,
    id: GenerationId,
    user_id: UserId,
    watch: Watch,
    /// The version last sent (or the client's `Last-Event-ID`).
    sent: i64,
    /// A row read and not yet considered.
    next: Option<GenerationRow>,
}

fn events(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some(live), |live| async move {
        let mut live = live?;
        loop {
            let row = match live.next.take() {
                Some(row) => row,
                None => live.changed_row().await?,
            };
            if row.version <= live.sent {
                if row.status.is_terminal() {
                    return None;
                }
                continue;
            }
            let view = match build_view(&live.state, &row).await {
                Ok(view) => view,
                Err(error) => {
                    tracing::warn!(generation.id = %live.id, error = ?error, "could not build a stream event; closing");
                    return None;
                }
            };
            let mut event = Event::default().id(row.version.to_string());
            if live.sent == 0 {
                event = event.retry(RECONNECT_HINT);
            }
            let event = event.json_data(&view).unwrap_or_else(|_| Event::default().comment("unencodable"));
            live.sent = row.version;
            // After a terminal state the stream ends: the event goes out, then nothing.
            let rest = if row.status.is_terminal() { None } else { Some(live) };
            return Some((Ok(event), rest));
        }
    })
}

impl Live {
    /// Waits for the next wake-up and reads the row; `None` ends the stream (shutdown,
    /// the row gone, or the database failing, which the client's reconnect retries).
    async fn changed_row(&mut self) -> Option<GenerationRow> {
        tokio::select! {
            changed = self.watch.changes.changed() => changed.ok()?,
            () = self.state.live.shutdown.cancelled() => return None,
        }
        match self.state.services.db.get_generation_of_user(self.id.as_str(), &self.user_id).await {
            Ok(row) => row,
            Err(error) => {
                tracing::warn!(generation.id = %self.id, error = %petportrait_core::errors::error_chain(&error), "stream could not read its generation; closing");
                None
            }
        }
    }
}
