//! `POST /v1/uploads` and `GET /v1/uploads/{id}`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use petportrait_core::config::UploadLimits;
use petportrait_core::db::UploadRow;
use petportrait_core::ids::UploadId;
use petportrait_core::imaging::{self, ImageRejection};
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

/// Reads the part named `file` into one buffer of at most `max` bytes, allocated once
/// (the body's size is reserved from the memory budget before this runs).
async fn read_file_part(multipart: &mut Multipart, max: usize, expected: usize) -> ApiResult<Bytes> {
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text())
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("file") {
            let mut bytes = BytesMut::with_capacity(expected.min(max));
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > max {
                    return Err(too_large(max));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(bytes.freeze());
        }
    }
    Err(ApiError::unprocessable("missing_file", "send the image as a multipart part named \"file\""))
}

/// The multipart body of `POST /v1/uploads`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the form `create_upload` reads part by part.
pub struct UploadForm {
    /// A JPEG, PNG or WebP photo.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("session" = []), ("bearer" = [])), request_body(content = UploadForm, content_type = "multipart/form-data"), responses(
    (status = 201, description = "The photo, checked and stored until `expires_at`", body = UploadView),
    (status = 400, description = "`invalid_multipart`: not multipart/form-data with a part named `file`."),
    (status = 413, description = "`payload_too_large`: larger than UPLOAD_MAX_BYTES."),
    (status = 415, description = "`unsupported_media_type`: not a JPEG, PNG or WebP image."),
    (status = 422, description = "`missing_file`: no part named `file`.\n\n`image_too_large`: too many pixels.\n\n`image_truncated`, `image_corrupt`: the image cannot be decoded whole.\n\n`image_polyglot`: a ZIP, PDF, web page or script hides in the file."),
    (status = 429, description = "`rate_limited`: more than RATE_LIMIT_UPLOADS allows for one user (`Retry-After`; `RateLimit` and `RateLimit-Policy` as in the IETF draft).", headers(
        ("Retry-After" = u32, description = "Seconds until the request may be sent again"),
        ("RateLimit-Policy" = String, description = "`\"uploads\";q=<requests>;w=<seconds>`"),
        ("RateLimit" = String, description = "`\"uploads\";r=<remaining>;t=<seconds until the allowance is whole>`"),
    )),
    (status = 503, description = "`busy`: too many uploads are being decoded; try again (`Retry-After`)."),
))]
pub async fn create_upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    // Counted before the body is read: a refused upload costs us no memory or decode.
    crate::rate_limits::check(&state, "uploads", &user.id, state.limits.uploads).await?;
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(rejection.status(), "invalid_multipart", "send the image as multipart/form-data, part \"file\"")
    })?;
    let limits = state.uploads.clone();
    let memory = state.services.memory.clone();
    // The body is held whole, so its size comes out of the memory budget first: the
    // declared length when there is one (the body limit refuses more), else the most an
    // upload may be. While the budget is spent, uploads wait their turn.
    let body_limit = upload_body_limit(&limits);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .map_or(body_limit, |n| n.min(body_limit));
    let _body = tokio::time::timeout(state.body_timeout, memory.reserve(declared as u64))
        .await
        .map_err(|_| ApiError::busy("the server is busy with other uploads; try again shortly"))?
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string()))?;
    // A client trickling its upload must not hold a connection and a buffer for ever.
    let bytes = tokio::time::timeout(state.body_timeout, read_file_part(&mut multipart, limits.max_bytes, declared))
        .await
        .map_err(|_| ApiError::body_timeout(state.body_timeout))??;
    // The header first (cheap, refuses bombs), then every pixel under the budget, so
    // truncated or corrupt files are refused now rather than in the worker. What is
    // stored is the image without its metadata, and without whatever followed it (a
    // phone's motion-photo video); the orientation its EXIF gave goes into the row.
    // Decodes take turns, one per core: more would only share the cores. The permit
    // moves into the blocking task, so a client that hangs up does not free it while
    // the decode still runs.
    let turn = state.decode_slots.clone().acquire_owned().await?;
    let prepared = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        imaging::prepare_upload(&bytes, &limits, &memory)
    })
    .await?
    .map_err(rejection)?;

    let user_id = user.user_id();
    let id = UploadId::generate();
    let content_type = prepared.info.format.content_type();
    let placement = Placement::Upload { upload: &id, extension: prepared.info.format.extension() };
    let (width, height) = (prepared.width, prepared.height);
    let orientation = prepared.orientation.to_exif();
    let db = &state.services.db;
    let stored = Bytes::from(prepared.stored);
    let upload = state
        .services
        .objects
        .write(&user_id, placement, content_type, Source::Bytes(stored), now_ms(), |object| {
            let upload = UploadRow {
                id: id.to_string(),
                user_id: user_id.to_string(),
                object_id: object.id.to_string(),
                content_type: content_type.to_owned(),
                width: i64::from(width),
                height: i64::from(height),
                orientation: Some(i64::from(orientation)),
                bytes: object.bytes,
                created_at: object.created_at,
                expires_at: object.expires_at,
            };
            async move { db.insert_upload(&upload).await.map(|()| upload) }
        })
        .await?;
    let size = upload.bytes;
    tracing::info!(upload.id = %id, bytes = size, width, height, orientation, "upload stored");
    Ok((StatusCode::CREATED, axum::Json(UploadView::from_row(&upload))).into_response())
}

/// The largest body `POST /v1/uploads` accepts: the file and its multipart framing.
pub fn upload_body_limit(limits: &UploadLimits) -> usize {
    limits.max_bytes + 64 * 1024
}

#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "An upload id (`upl_…`)"),
), responses(
    (status = 200, description = "The upload's metadata", body = UploadView),
    (status = 410, description = "`gone`: the upload has expired and its photo was deleted."),
))]
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
