//! `POST /auth/dev-login`: development sign-in without Google, on loopback only.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::accounts::{Profile, Subject};
use petportrait_core::time::now_ms;
use serde::Deserialize;

use super::{check_same_origin, start_session};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevLoginRequest {
    email: String,
    name: String,
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Creates the account on first use (with the starter credits) and starts a session.
#[utoipa::path(post, path = "/auth/dev-login", tag = "account", request_body = DevLoginRequest, responses(
    (status = 204, description = "Signed in (the account is made on first use); the session cookie is set"),
    (status = 403, description = "`csrf_rejected`: a request from another origin."),
    (status = 404, description = "`not_found`: from a non-loopback peer or through a proxy."),
    (status = 422, description = "`invalid_email`: not an e-mail address.\n\n`invalid_name`: not 1 to 100 characters."),
))]
pub async fn dev_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    JsonBody(request): JsonBody<DevLoginRequest>,
) -> ApiResult<Response> {
    // Behind a reverse proxy every peer is loopback: a forwarded request is not local.
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
    if !peer.ip().is_loopback() || forwarded {
        return Err(ApiError::not_found());
    }
    check_same_origin(&method, &headers, &state.public_url)?;
    let email = request.email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(ApiError::unprocessable("invalid_email", "email must be a valid e-mail address"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::unprocessable("invalid_name", "name must be 1 to 100 characters"));
    }
    let subject = Subject::Dev { email: email.clone() };
    let profile = Profile { name: name.to_owned(), email, picture_url: None };
    let (user, created) =
        state.services.accounts.find_or_create(&subject, &profile, state.starter_credits, now_ms()).await?;
    if created {
        tracing::info!(user.id = %user.id, "account created through dev sign-in");
    }
    let cookie = start_session(&state, &user.user_id(), &headers).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        assert!(valid_email(&format!("ann{}example.com", '@')));
        assert!(!valid_email("ann"));
        assert!(!valid_email("ann@localhost"));
        assert!(!valid_email(&format!("a nn{}example.com", '@')));
    }
}
