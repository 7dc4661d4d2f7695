//! JSON bodies parsed into types at the edge, with problem+json errors.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// Whether the request declares a JSON body: the media type is exactly
/// `application/json` (parameters such as `charset` allowed). Anything else, a missing
/// type included, is refused, so a cross-site HTML form (which can only send
/// `text/plain`, `multipart/form-data` or `application/x-www-form-urlencoded`) can never
/// pass for a JSON request.
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
}

/// The raw body of a request that declares JSON (for handlers that also hash it).
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if !declares_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let read = Bytes::from_request(request, state);
        tokio::time::timeout(state.body_timeout, read)
            .await
            .map_err(|_| ApiError::body_timeout(state.body_timeout))?
            .map(JsonBytes)
            .map_err(|rejection| ApiError::new(rejection.status(), "invalid_body", rejection.body_text()))
    }
}

/// Like `axum::Json`, but a bad body answers problem+json with a stable code.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with an error that says where it went wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_application_json_is_json() {
        let declares = |value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            }
            declares_json(&headers)
        };
        assert!(declares(Some("application/json")));
        assert!(declares(Some("Application/JSON; charset=utf-8")));
        for refused in [None, Some("text/plain;x=+json"), Some("text/plain"), Some("application/json-seq")] {
            assert!(!declares(refused), "{refused:?}");
        }
        assert!(!declares(Some("application/problem+json")), "only plain JSON is a request body");
    }
}
