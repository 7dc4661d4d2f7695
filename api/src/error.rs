//! RFC 9457 problem details with a stable machine-readable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer. 5xx answers are opaque; their cause is logged once, here.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header (503 and 429 answers).
    pub retry_after: Option<u32>,
    /// Further headers of the answer (a 429's `RateLimit` and `RateLimit-Policy`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, code, detail: detail.into(), retry_after: None, headers: Vec::new() }
    }

    /// The server is at capacity for now (503 with `Retry-After`).
    pub fn busy(detail: impl Into<String>) -> ApiError {
        ApiError::unavailable("busy", detail, 1)
    }

    /// 503 with `Retry-After`: something we depend on (our memory, Google, Stripe) is
    /// not available now; the same request later may succeed.
    pub fn unavailable(code: &'static str, detail: impl Into<String>, retry_after_secs: u32) -> ApiError {
        ApiError { retry_after: Some(retry_after_secs), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail) }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn gone(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GONE, "gone", detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// The client did not send its body within the deadline.
    pub fn body_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body must arrive within {} s", limit.as_secs()),
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in or send a valid bearer token")
    }

    /// An unexpected failure: logged with its whole cause chain, answered opaquely.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::error!(error = %petportrait_core::errors::error_chain(error), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")
    }
}

/// Failures of the platform's own parts are opaque 500s: `?` logs them with their cause
/// chain once, here. Errors a client can cause are mapped where they happen.
macro_rules! internal_errors {
    ($($error:ty),+ $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(error: $error) -> ApiError {
                ApiError::internal(&error)
            }
        })+
    };
}

internal_errors!(
    petportrait_core::db::DbError,
    petportrait_core::storage::StorageError,
    petportrait_core::objects::ObjectWriteError,
    petportrait_core::queue::JobQueueError,
    petportrait_core::accounts::AccountError,
    petportrait_core::sealing::SealError,
    petportrait_core::webhooks::WebhookError,
    tokio::task::JoinError,
    tokio::sync::AcquireError,
    axum::http::header::InvalidHeaderValue,
    std::num::TryFromIntError,
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body =
            Problem { kind: "about:blank", title, status: self.status.as_u16(), detail: &self.detail, code: self.code };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
