//! Sessions: the cookie, the extractor that turns it into a user, CSRF protection for
//! cookie-authenticated writes, and the embedded mode's dev sign-in.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use petportrait_core::accounts::{Profile, Subject};
use petportrait_core::db::UserRow;
use petportrait_core::time::now_ms;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;

pub const SESSION_COOKIE: &str = "pp_session";
const SESSION_DAYS: i64 = 30;

/// The signed-in user of a request.
pub struct CurrentUser(pub UserRow);

fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Refuses a cookie-authenticated write that a browser says comes from another site.
/// Browsers send `Sec-Fetch-Site`, which pages cannot forge; older ones only `Origin`,
/// which must then be the public URL. Clients that send neither are not browsers.
fn check_same_origin(method: &Method, headers: &HeaderMap, public_url: &str) -> ApiResult<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let allowed = match (header("sec-fetch-site"), header("origin")) {
        (Some(site), _) => matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => origin == public_url,
        (None, None) => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_rejected", "cross-site request refused"))
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<CurrentUser> {
        let token = session_token(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        check_same_origin(&parts.method, &parts.headers, &state.public_url)?;
        let user = state
            .services
            .db
            .find_session_user(&hash_token(&token), now_ms())
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(CurrentUser(user))
    }
}

#[derive(Deserialize)]
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

/// `POST /auth/dev-login`: embedded mode only, loopback only. Creates the account on
/// first use (with the starter credits) and starts a session.
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
    let now = now_ms();
    let subject = Subject::Dev { email: email.clone() };
    let profile = Profile { name: name.to_owned(), email, picture_url: None };
    let (user, created) =
        state.services.accounts.find_or_create(&subject, &profile, state.starter_credits, now).await?;
    if created {
        tracing::info!(user.id = %user.id, "account created through dev sign-in");
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let expires_at = now + SESSION_DAYS * 86_400_000;
    state.services.db.insert_session(&hash_token(&token), &user.user_id(), now, expires_at).await?;
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie =
        format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{secure}", SESSION_DAYS * 86_400);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie)?);
    Ok(response)
}

/// `POST /auth/logout`: ends this session.
pub async fn logout(State(state): State<AppState>, method: Method, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = session_token(&headers) {
        check_same_origin(&method, &headers, &state.public_url)?;
        state.services.db.delete_session(&hash_token(&token)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("pp_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; pp_session=abc; b=2"));
        assert_eq!(session_token(&headers).as_deref(), Some("abc"));
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let public = "http://127.0.0.1:8080";
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(check_same_origin(&Method::POST, &with(&[("sec-fetch-site", "same-origin")]), public).is_ok());
        assert!(check_same_origin(&Method::POST, &with(&[("sec-fetch-site", "cross-site")]), public).is_err());
        assert!(check_same_origin(&Method::POST, &with(&[("origin", "https://evil.example")]), public).is_err());
        assert!(check_same_origin(&Method::POST, &with(&[("origin", "http://127.0.0.1:8080")]), public).is_ok());
        assert!(check_same_origin(&Method::POST, &with(&[]), public).is_ok());
        assert!(check_same_origin(&Method::GET, &with(&[("sec-fetch-site", "cross-site")]), public).is_ok());
    }

    #[test]
    fn email_shapes() {
        assert!(valid_email(&format!("ann{}example.com", '@')));
        assert!(!valid_email("ann"));
        assert!(!valid_email("ann@localhost"));
        assert!(!valid_email(&format!("a nn{}example.com", '@')));
    }
}
