//! `POST /v1/uploads` and `GET /v1/uploads/{id}`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use petportrait_core::db::UploadRow;
use petportrait_core::ids::UploadId;
use petportrait_core::imaging::{self, ImageInfo, ImageRejection};
use petportrait_core::objects::{Placement, Source};
use petportrait_core::time::now_ms;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;
use crate::views::UploadView;

fn rejection(error: ImageRejection) -> ApiError {
    let status = match error {
        ImageRejection::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, error.code(), error.to_string())
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("uploads are limited to {max} bytes"))
}

/// Reads the part named `file`; the body limit is enforced while reading.
async fn read_file_part(multipart: &mut Multipart, max: usize) -> ApiResult<Bytes> {
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text())
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("file") {
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if bytes.len() > max {
                return Err(too_large(max));
            }
            return Ok(bytes);
        }
    }
    Err(ApiError::unprocessable("missing_file", "send the image as a multipart part named \"file\""))
}

pub async fn create_upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(rejection.status(), "invalid_multipart", "send the image as multipart/form-data, part \"file\"")
    })?;
    let limits = state.uploads.clone();
    // A client trickling its upload must not hold a connection and a buffer for ever.
    let bytes = tokio::time::timeout(state.body_timeout, read_file_part(&mut multipart, limits.max_bytes))
        .await
        .map_err(|_| ApiError::body_timeout(state.body_timeout))??;
    // Header checks first (cheap, refuses bombs), then a full decode under a memory
    // limit so that truncated or corrupt files are refused now rather than in the worker.
    // Decodes take turns: each may need hundreds of megabytes.
    // The permit moves into the blocking task, so a client that hangs up does not free it
    // while the decode still runs.
    let turn = state.decode_slots.clone().acquire_owned().await?;
    let checked = bytes.clone();
    // The size reported is the upright picture's, after its EXIF orientation.
    // Only the image's own bytes are stored: a phone's motion-photo video after it is not.
    let (info, width, height, image_length): (ImageInfo, u32, u32, usize) = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let info = imaging::inspect(&checked, &limits)?;
        let (upright, image_length) = imaging::decode_with_length(&checked, &info)?;
        Ok::<_, ImageRejection>((info, upright.width(), upright.height(), image_length))
    })
    .await?
    .map_err(rejection)?;

    let user_id = user.user_id();
    let id = UploadId::generate();
    let content_type = info.format.content_type();
    let placement = Placement::Upload { upload: &id, extension: info.format.extension() };
    let db = &state.services.db;
    let upload = state
        .services
        .objects
        .write(&user_id, placement, content_type, Source::Bytes(bytes.slice(..image_length)), now_ms(), |object| {
            let upload = UploadRow {
                id: id.to_string(),
                user_id: user_id.to_string(),
                object_id: object.id.to_string(),
                content_type: content_type.to_owned(),
                width: i64::from(width),
                height: i64::from(height),
                bytes: object.bytes,
                created_at: object.created_at,
                expires_at: object.expires_at,
            };
            async move { db.insert_upload(&upload).await.map(|()| upload) }
        })
        .await?;
    let size = upload.bytes;
    tracing::info!(upload.id = %id, bytes = size, width, height, "upload stored");
    Ok((StatusCode::CREATED, axum::Json(UploadView::from_row(&upload))).into_response())
}

pub async fn get_upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<UploadId>,
) -> ApiResult<axum::Json<UploadView>> {
    let upload =
        state.services.db.get_upload_of_user(id.as_str(), &user.user_id()).await?.ok_or_else(ApiError::not_found)?;
    if upload.expires_at <= now_ms() {
        return Err(ApiError::gone("the upload has expired and its photo was deleted"));
    }
    Ok(axum::Json(UploadView::from_row(&upload)))
}
