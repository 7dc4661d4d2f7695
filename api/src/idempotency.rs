//! `Idempotency-Key`, read the same way by every route that takes one
//! (`POST /v1/generations`, `POST /v1/checkout`): the key, a fingerprint of the body it
//! came with, and the answers to a key reused with another body or still in flight.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// The header a replayed answer carries.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Reads the `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim().trim_matches('"');
    if text.is_empty() || text.len() > 255 || !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A fingerprint of the request body, independent of key order and whitespace.
pub fn fingerprint(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_else(|_| body.to_vec());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
}

/// 422: the key was used before with another body.
pub fn conflict() -> ApiError {
    ApiError::unprocessable("idempotency_conflict", "this Idempotency-Key was used with a different request body")
}

/// 409: the first request with this key has not been answered yet.
pub fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still being processed",
    )
}

pub fn replayed_value() -> HeaderValue {
    HeaderValue::from_static("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace() {
        assert_eq!(fingerprint(br#"{"a":1,"b":[2]}"#), fingerprint(b"{ \"b\": [2], \"a\": 1 }"));
        assert_ne!(fingerprint(br#"{"a":1}"#), fingerprint(br#"{"a":2}"#));
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", HeaderValue::from_str(value).expect("header"));
            h
        };
        assert_eq!(idempotency_key(&headers("buy-1")).expect("valid"), Some("buy-1".to_owned()));
        assert!(idempotency_key(&headers("")).is_err());
        assert!(idempotency_key(&headers("a b")).is_err());
        assert!(idempotency_key(&headers(&"k".repeat(256))).is_err());
        assert_eq!(idempotency_key(&HeaderMap::new()).expect("absent"), None);
    }
}
