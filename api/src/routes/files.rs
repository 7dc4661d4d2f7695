//! `GET /v1/files/{id}`: one of the caller's outputs or gallery copies. With
//! `S3_PUBLIC_ENDPOINT` the answer is a 302 to a presigned link that expires within
//! minutes (the bytes never pass through the API); otherwise the API serves the bytes
//! itself, with an `ETag` (an object's bytes never change) and single `Range` requests,
//! so media players seek and interrupted downloads resume. Either way, an expired or
//! purged file is 410 before any link is made.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::db::StoredObjectRow;
use petportrait_core::domain::StoredObjectKind;
use petportrait_core::ids::ObjectId;
use petportrait_core::storage::ByteRange;
use petportrait_core::time::now_ms;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;

/// How long a download link lives (never past the file itself).
const LINK_TTL: Duration = Duration::from_secs(300);

#[utoipa::path(get, path = "/v1/files/{id}", tag = "generations", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A file id from an output's or gallery item's `url`"),
    ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
    ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy the client has"),
), responses(
    (status = 200, description = "The file, as an attachment", content(
        ("image/jpeg"), ("image/png"), ("image/webp"), ("audio/wav"), ("model/stl"), ("model/gltf-binary"), ("application/octet-stream"),
    )),
    (status = 206, description = "The byte range asked for", content(
        ("image/jpeg"), ("image/png"), ("image/webp"), ("audio/wav"), ("model/stl"), ("model/gltf-binary"), ("application/octet-stream"),
    )),
    (status = 302, description = "A short-lived link to the object store (when it has a public endpoint)"),
    (status = 304, description = "Unchanged since `If-None-Match`"),
    (status = 410, description = "`gone`: the file has expired and was deleted."),
    (status = 416, description = "`range_not_satisfiable`: the range is outside the file (`Content-Range: bytes */size`)."),
))]
pub async fn get_file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<ObjectId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let db = &state.services.db;
    // Uploads are never served back (their ids are never handed out either): only what
    // the service made can be downloaded. An export is downloaded through its request
    // (`/v1/privacy/requests/{id}/download`), which records the download.
    let object = db
        .get_object_of_user(id.as_str(), &user.user_id())
        .await?
        .filter(|object| !matches!(object.kind, StoredObjectKind::Upload | StoredObjectKind::Export))
        .ok_or_else(ApiError::not_found)?;
    if !object.is_available(now_ms()) {
        return Err(ApiError::gone("this file has expired and was deleted"));
    }
    let filename = db.download_filename(&object.id).await?.unwrap_or_else(|| object.id.clone());
    serve_object(&state, &object, &filename, &headers).await
}

/// Answers with an available object of the caller: a 302 to a presigned link when the
/// store has a public endpoint, else the bytes (with `ETag` and one `Range`).
pub(crate) async fn serve_object(
    state: &AppState,
    object: &StoredObjectRow,
    filename: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let now = now_ms();
    let disposition = content_disposition(filename);
    let store = &state.services.store;
    let left = object.expires_at.map_or(LINK_TTL, |at| Duration::from_millis((at - now).max(1_000) as u64));
    // `None` without a public endpoint: the bytes are served below.
    if let Some(link) =
        store.presigned_get(&object.object_key, LINK_TTL.min(left), &object.content_type, &disposition).await?
    {
        let mut response = StatusCode::FOUND.into_response();
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&link)?);
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        return Ok(response);
    }

    let size = u64::try_from(object.bytes).unwrap_or(0);
    let etag = HeaderValue::from_str(&format!("\"{}\"", object.id))?;
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag);
        return Ok(response);
    }
    // `If-Range` with another validator means "the whole file": it changed for the client.
    let range_applies = headers.get(header::IF_RANGE).is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| range_applies) {
        Some(text) => match parse_range(text, size) {
            RangeAsked::One(range) => Some(range),
            RangeAsked::Unsatisfiable => {
                let mut response = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the file has {size} bytes"),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}"))?);
                return Ok(response);
            }
            RangeAsked::Ignored => None,
        },
        None => None,
    };
    // Streamed from the store, whole or a range (an export can be large).
    let stream = store
        .get_stream_range(&object.object_key, range)
        .await?
        .ok_or_else(|| ApiError::gone("this file has been deleted"))?;
    let length = range.map_or(size, |r| r.last - r.first + 1);
    let mut response = axum::body::Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(ByteRange { first, last }) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response
            .headers_mut()
            .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes {first}-{last}/{size}"))?);
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(&object.content_type)?);
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition)?);
    headers.insert(header::ETAG, etag);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// `attachment; filename="…"` with the name reduced to characters every client reads
/// the same way (our names are ASCII already: `portrait-watercolor.jpg`).
fn content_disposition(filename: &str) -> String {
    let safe: String = filename
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    One(ByteRange),
    /// A well-formed range that starts past the end.
    Unsatisfiable,
    /// Malformed, or several ranges: answered with the whole file, as RFC 9110 allows.
    Ignored,
}

/// Reads `bytes=first-last`, `bytes=first-` or `bytes=-suffix` against a file of `size`.
fn parse_range(text: &str, size: u64) -> RangeAsked {
    let Some(spec) = text.trim().strip_prefix("bytes=") else { return RangeAsked::Ignored };
    if spec.contains(',') {
        return RangeAsked::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAsked::Ignored };
    let parsed = |s: &str| s.trim().parse::<u64>().ok();
    let (first, last) = match (first.trim().is_empty(), parsed(first), parsed(last)) {
        // The last `suffix` bytes.
        (true, _, Some(suffix)) if suffix > 0 => (size.saturating_sub(suffix), size.saturating_sub(1)),
        (true, _, _) => return RangeAsked::Ignored,
        (false, Some(first), None) if last.trim().is_empty() => (first, size.saturating_sub(1)),
        (false, Some(first), Some(last)) if last >= first => (first, last.min(size.saturating_sub(1))),
        _ => return RangeAsked::Ignored,
    };
    if size == 0 || first >= size {
        return RangeAsked::Unsatisfiable;
    }
    RangeAsked::One(ByteRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let one = |first, last| RangeAsked::One(ByteRange { first, last });
        assert_eq!(parse_range("bytes=0-99", 1000), one(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), one(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), one(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), one(0, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000), one(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsked::Unsatisfiable);
        for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-", "bytes=-0", "bytes=-"] {
            assert_eq!(parse_range(ignored, 1000), RangeAsked::Ignored, "{ignored}");
        }
    }

    #[test]
    fn the_download_name_is_plain_ascii() {
        assert_eq!(content_disposition("portrait-watercolor.jpg"), "attachment; filename=\"portrait-watercolor.jpg\"");
        assert_eq!(content_disposition("a\"b\r\n.png"), "attachment; filename=\"a_b__.png\"");
    }
}
