//! The gallery: `POST /v1/generations/{id}/save`, `GET /v1/gallery`,
//! `DELETE /v1/gallery/{id}`. Saved items are copies of a generation's outputs that
//! the output expiry never touches; they stay until the user deletes them.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use petportrait_core::db::{GalleryItemRow, GenerationRow, KeepOutcome, OutputRow};
use petportrait_core::domain::{GenerationKind, GenerationStatus, StoredObjectKind};
use petportrait_core::ids::{GalleryItemId, GenerationId, UserId};
use petportrait_core::objects::{ObjectWriteError, Placement, Source};
use petportrait_core::time::now_ms;
use serde::Serialize;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathId, Query};
use crate::pagination::{PageRequest, split_page};
use crate::views::Page;

#[derive(Serialize, utoipa::ToSchema)]
pub struct GalleryItemView {
    id: String,
    generation_id: String,
    kind: GenerationKind,
    style: String,
    filename: String,
    content_type: String,
    bytes: i64,
    url: String,
    created_at: String,
}

impl From<GalleryItemRow> for GalleryItemView {
    fn from(row: GalleryItemRow) -> Self {
        GalleryItemView {
            url: format!("/v1/files/{}", row.object_id),
            created_at: petportrait_core::time::rfc3339(row.created_at),
            id: row.id,
            generation_id: row.generation_id,
            kind: row.kind,
            style: row.style,
            filename: row.filename,
            content_type: row.content_type,
            bytes: row.bytes,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SavedItems {
    data: Vec<GalleryItemView>,
}

/// Copies every output of a succeeded generation into the gallery. Saving again
/// answers the same items (one item per output, however often it is saved).
#[utoipa::path(post, path = "/v1/generations/{id}/save", tag = "gallery", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A generation id (`gen_…`)"),
), responses(
    (status = 201, description = "The gallery items, one per output (the same ones when saved again)", body = SavedItems),
    (status = 409, description = "`not_succeeded`: only a succeeded generation can be saved.\n\n`save_conflict`: the item was deleted while being saved."),
    (status = 410, description = "`gone`: the outputs have expired."),
    (status = 503, description = "`save_interrupted`: the copy could not be made now; try again."),
))]
pub async fn save_generation(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<GenerationId>,
) -> ApiResult<Response> {
    let db = &state.services.db;
    let user_id = user.user_id();
    let generation = db.get_generation_of_user(id.as_str(), &user_id).await?.ok_or_else(ApiError::not_found)?;
    if generation.status != GenerationStatus::Succeeded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_succeeded",
            "only the outputs of a succeeded generation can be saved",
        ));
    }
    let outputs = db.list_outputs(&generation.id).await?;
    let mut items = Vec::with_capacity(outputs.len());
    for output in &outputs {
        items.push(save_output(&state, &user_id, &generation, output).await?);
    }
    Ok((StatusCode::CREATED, Json(SavedItems { data: items.into_iter().map(Into::into).collect() })).into_response())
}

const EXPIRED: &str = "this generation's files have expired and can no longer be saved";

async fn save_output(
    state: &AppState,
    user: &UserId,
    generation: &GenerationRow,
    output: &OutputRow,
) -> ApiResult<GalleryItemRow> {
    let db = &state.services.db;
    if let Some(existing) = db.gallery_item_from_output(user, &output.id).await? {
        return Ok(existing);
    }
    let now = now_ms();
    let source = db
        .get_object_of_user(&output.object_id, user)
        .await?
        .filter(|object| object.is_available(now))
        .ok_or_else(|| ApiError::gone(EXPIRED))?;
    let item_id = GalleryItemId::generate();
    let placement = Placement::Gallery { item: &item_id };
    let copy_of = Source::CopyOf { key: source.object_key, bytes: output.bytes };
    let (item, outcome) = state
        .services
        .objects
        .write(user, placement, &output.content_type, copy_of, now, |copy| {
            let item = GalleryItemRow {
                id: item_id.to_string(),
                user_id: user.to_string(),
                generation_id: generation.id.clone(),
                source_output_id: output.id.clone(),
                object_id: copy.id.to_string(),
                kind: generation.kind,
                style: generation.style.clone(),
                filename: output.filename.clone(),
                content_type: output.content_type.clone(),
                bytes: output.bytes,
                created_at: copy.created_at,
            };
            // Recording the item also clears the copy's provisional expiry.
            let lasting = state.services.objects.lasting_expiry(StoredObjectKind::Gallery, now);
            async move { db.keep_gallery_item(&item, lasting).await.map(|outcome| (item, outcome)) }
        })
        .await
        .map_err(|error| match error {
            ObjectWriteError::SourceGone(_) => ApiError::gone(EXPIRED),
            error => error.into(),
        })?;
    match outcome {
        KeepOutcome::Kept => {
            tracing::info!(gallery.item = %item.id, generation.id = %generation.id, "output saved to the gallery");
            Ok(item)
        }
        KeepOutcome::CopyPurged => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "save_interrupted",
            "saving took too long and its copy was cleaned up; try again",
        )),
        // A concurrent save won; our copy stays provisional and the purge removes it.
        KeepOutcome::AlreadySaved => db.gallery_item_from_output(user, &output.id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, "save_conflict", "the item was deleted while being saved; try again")
        }),
    }
}

#[utoipa::path(get, path = "/v1/gallery", tag = "gallery", security(("session" = []), ("bearer" = [])), params(crate::openapi::PageParams), responses(
    (status = 200, description = "The caller's saved items, newest first", body = Page<GalleryItemView>),
))]
pub async fn list_gallery(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<GalleryItemView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let rows = state.services.db.list_gallery(&user.user_id(), page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    Ok(Json(Page { data: rows.into_iter().map(Into::into).collect(), next_cursor }))
}

/// Deletes an item; its copy stops being served at once and the purge deletes it.
#[utoipa::path(delete, path = "/v1/gallery/{id}", tag = "gallery", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A gallery item id"),
), responses(
    (status = 204, description = "Deleted; its copy is no longer served"),
))]
pub async fn delete_gallery_item(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<GalleryItemId>,
) -> ApiResult<StatusCode> {
    if state.services.db.delete_gallery_item(&user.user_id(), id.as_str(), now_ms()).await? {
        tracing::info!(gallery.item = %id, "gallery item deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
