//! The OpenAPI document. Each handler carries its own `#[utoipa::path]` annotation and is
//! registered with utoipa-axum's `routes!`, which takes the method and path from that
//! annotation: a route cannot exist without its entry in the document, nor the other
//! way round. The errors every route of a class can answer (a hostile Host header, a
//! missing session, a body of the wrong type…) come from shared extractors and
//! middleware, so they are added here, once, from what each operation declares.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{IntoParams, Modify, ToSchema};

/// The body of every error answer: RFC 9457 problem details with our stable `code`.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used; `error.rs` writes the body.
pub struct Problem {
    /// Always `about:blank`: the `code` says what happened.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable and machine-readable; each operation lists the codes it can answer.
    code: String,
}

/// `?limit=` and `?cursor=` of every list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Only documents the parameters; `pagination.rs` parses them.
pub struct PageParams {
    /// How many items (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The media type of problem answers.
pub const PROBLEM: &str = "application/problem+json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "PetPortrait API",
        description = "AI pet portraits, music and sculptures as queued generations. Errors are \
            RFC 9457 problem details (`application/problem+json`) whose `code` is stable; each \
            operation lists the codes it can answer. Sign in with Google (or dev sign-in where it \
            is on) for the `pp_session` cookie, or send a personal API token as a bearer token."
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "account", description = "Sign-in, sessions, profile, tokens and the policy"),
        (name = "catalogue", description = "What can be made and what it costs"),
        (name = "uploads", description = "Pet photos"),
        (name = "generations", description = "Portraits, music and sculptures"),
        (name = "gallery", description = "Saved results that outlive their expiry"),
        (name = "credits", description = "Balance, ledger and purchases"),
        (name = "webhooks", description = "Endpoints, deliveries and the signing secret"),
        (name = "privacy", description = "Privacy requests: an export of your data, the deletion of your account"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("pp_session"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A personal API token (POST /v1/me/tokens)"))
                    .build(),
            ),
        );
    }
}

/// Adds to every operation the problem answers it shares with its class, and gives every
/// error answer the problem body.
pub fn complete(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let shared = shared_problems(path, &method, operation);
            for (status, code, meaning) in shared {
                add_problem(operation, status, code, meaning);
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else { continue };
                if (status.starts_with('4') || status.starts_with('5')) && response.content.is_empty() {
                    response.content.insert(PROBLEM.to_owned(), problem_content().into());
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    let mut found = Vec::new();
    for (method, operation) in [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
    ] {
        if let Some(operation) = operation {
            found.push((method, operation));
        }
    }
    found
}

/// Adds the 429 of `RATE_LIMIT_ANONYMOUS` to every operation of `doc` (the routes that
/// need no sign-in, before they join the others).
pub fn limited_per_address(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            add_problem(
                operation,
                429,
                "rate_limited",
                "more than RATE_LIMIT_ANONYMOUS allows for one client address (`Retry-After`, `RateLimit`, \
                 `RateLimit-Policy`)",
            );
            if let Some(utoipa::openapi::RefOr::T(response)) = operation.responses.responses.get_mut("429") {
                for (name, description) in [
                    ("Retry-After", "Seconds until the request may be sent again"),
                    ("RateLimit-Policy", "`\"anonymous\";q=<requests>;w=<seconds>`"),
                    ("RateLimit", "`\"anonymous\";r=<remaining>;t=<seconds until the allowance is whole>`"),
                ] {
                    let header = HeaderBuilder::new().description(Some(description)).build();
                    response.headers.insert(name.to_owned(), header.into());
                }
            }
        }
    }
}

/// Operations that read their body as raw bytes (Stripe's events: the signature covers
/// the bytes as sent), so no JSON or media-type problem can come of it.
const RAW_BODY_OPERATIONS: [&str; 1] = ["stripe_webhook"];

/// The problems an operation can answer because of what it is, not what it does.
fn shared_problems(path: &str, method: &HttpMethod, operation: &Operation) -> Vec<(u16, &'static str, &'static str)> {
    let mut shared = vec![(500, "internal_error", "an unexpected failure (logged with its cause; retry later)")];
    if !crate::guards::ANY_HOST_PATHS.contains(&path) {
        shared.push((400, "missing_host", "the request names no host"));
        shared.push((421, "misdirected_request", "the Host header is not this service's"));
    }
    let authenticated = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
    if authenticated {
        shared.push((401, "unauthorized", "no valid session cookie or bearer token"));
        if *method != HttpMethod::Get {
            shared.push((403, "csrf_rejected", "a cookie-authenticated request from another origin"));
        }
    }
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |location: ParameterIn| {
        parameters.iter().any(|p| matches!(p, utoipa::openapi::RefOr::T(p) if p.parameter_in == location))
    };
    if has(ParameterIn::Path) {
        shared.push((404, "not_found", "no such resource of the caller (another user's answers the same)"));
    }
    if has(ParameterIn::Query) {
        shared.push((400, "invalid_parameter", "a query parameter that cannot be read"));
        shared.push((422, "invalid_parameter", "a query parameter out of range or unknown"));
    }
    let raw_body = operation.operation_id.as_deref().is_some_and(|id| RAW_BODY_OPERATIONS.contains(&id));
    if operation.request_body.is_some() && raw_body {
        shared.push((413, "payload_too_large", "the body is larger than this route accepts"));
    } else if operation.request_body.is_some() {
        shared.push((408, "request_timeout", "the body did not arrive within HTTP_BODY_TIMEOUT"));
        shared.push((413, "payload_too_large", "the body is larger than this route accepts"));
        shared.push((415, "unsupported_media_type", "the body is not of the documented media type"));
        shared.push((400, "invalid_body", "the body could not be read"));
        shared.push((422, "invalid_body", "the body is not the documented JSON"));
    }
    shared
}

/// Adds `code` to the answer `status` of `operation`, creating the answer if needed.
fn add_problem(operation: &mut Operation, status: u16, code: &str, meaning: &str) {
    let key = status.to_string();
    let line = format!("`{code}`: {meaning}.");
    match operation.responses.responses.get_mut(&key) {
        Some(utoipa::openapi::RefOr::T(response)) => {
            if !response.description.contains(&format!("`{code}`")) {
                response.description = format!("{}\n\n{line}", response.description);
            }
        }
        Some(utoipa::openapi::RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new().description(line).content(PROBLEM, problem_content()).build();
            operation.responses.responses.insert(key, response.into());
        }
    }
}

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build()
}

/// The finished document, serialised once when the router is built.
#[derive(Clone)]
pub struct Document(bytes::Bytes);

impl Document {
    pub fn new(doc: &OpenApi) -> Document {
        Document(serde_json::to_vec(doc).unwrap_or_default().into())
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "health", responses(
    (status = 200, description = "This document (OpenAPI 3.1)", body = Object),
))]
pub async fn document(axum::Extension(document): axum::Extension<Document>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document.0).into_response()
}
