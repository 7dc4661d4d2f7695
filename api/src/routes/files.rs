//! `GET /v1/files/{id}`: the bytes of one of the caller's outputs or gallery copies.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::domain::StoredObjectKind;
use petportrait_core::ids::ObjectId;
use petportrait_core::time::now_ms;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;

pub async fn get_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<ObjectId>,
) -> ApiResult<Response> {
    // Uploads are never served back (their ids are never handed out either): only what
    // the service made can be downloaded.
    let object = state
        .services
        .db
        .get_object_of_user(id.as_str(), &user.user_id())
        .await?
        .filter(|object| object.kind != StoredObjectKind::Upload)
        .ok_or_else(ApiError::not_found)?;
    if !object.is_available(now_ms()) {
        return Err(ApiError::gone("this file has expired and was deleted"));
    }
    let bytes = state
        .services
        .store
        .get(&object.object_key)
        .await?
        .ok_or_else(|| ApiError::gone("this file has been deleted"))?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&object.content_type)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}
