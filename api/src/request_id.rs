//! `X-Request-Id`: every request gets one (a valid one the client sent, else a new
//! ULID), it names the request's log span, comes back in the response, and is stored
//! with a generation so the worker's and the webhook deliveries' log lines carry it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Up to 128 characters of letters, digits, `-`, `_`, `.` and `:` (what proxies and
/// tracing systems send); anything else is replaced, never logged.
fn accept(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let fits = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    fits.then(|| text.to_owned())
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request.headers().get(&HEADER).and_then(accept).unwrap_or_else(|| ulid::Ulid::generate().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The span of one request: method, route path and its id (no query string, which may
/// carry tokens, and no header).
pub fn span(request: &Request) -> tracing::Span {
    let id = request.extensions().get::<RequestId>().map_or("", |r| r.0.as_str());
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request.id = %id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_accepted() {
        for good in ["abc-123", "01JABCDEF", "trace:span.1_2"] {
            assert_eq!(accept(&HeaderValue::from_static(good)).as_deref(), Some(good));
        }
        let long = "a".repeat(129);
        for bad in ["", "has space", "quote\"", "ünï", long.as_str()] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap_or(HeaderValue::from_static("x y"));
            assert_eq!(accept(&value), None, "{bad:?}");
        }
    }
}
