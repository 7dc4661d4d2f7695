//! Browser sessions: an opaque 256-bit cookie whose hash is the session row. A new id at
//! every sign-in (the session the browser held before is ended), idle and absolute
//! timeouts, sign-out here or everywhere. Over https the cookie is `__Host-` prefixed,
//! so no other site or subdomain can set or shadow it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::db::UserRow;
use petportrait_core::ids::UserId;
use petportrait_core::time::now_ms;

use super::{CurrentUser, TOUCH_EVERY_MS, check_same_origin, hash_secret, random_secret};
use crate::AppState;
use crate::error::ApiResult;

/// Every cookie the service sets: the allowlist, by construction (a cookie is set only
/// through `set_cookie`, which takes one of these). All are strictly necessary; none
/// is readable by scripts or sent to another site's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieKind {
    /// The session.
    Session,
    /// A Google sign-in in progress (ten minutes).
    SignIn,
    /// A new user's sealed claims until the age question (fifteen minutes).
    PendingSignUp,
    /// The age gate's refusal, so a second try is refused too (a year).
    AgeRefused,
}

impl CookieKind {
    pub const fn base_name(self) -> &'static str {
        match self {
            CookieKind::Session => "pp_session",
            CookieKind::SignIn => "pp_oauth",
            CookieKind::PendingSignUp => "pp_signup",
            CookieKind::AgeRefused => "pp_age_refused",
        }
    }
}

pub(super) const SESSION: CookieKind = CookieKind::Session;

/// A cookie's name: `__Host-` prefixed when the service is reached over https (browsers
/// accept that prefix only on Secure, host-only cookies with `Path=/`), so no other site
/// or subdomain can set or shadow it.
pub(super) fn cookie_name(public_url: &str, kind: CookieKind) -> String {
    let base = kind.base_name();
    if public_url.starts_with("https://") { format!("__Host-{base}") } else { base.to_owned() }
}

/// A `Set-Cookie` value: every cookie we set is first-party, HttpOnly, `SameSite=Lax`
/// (the sign-in callback is a cross-site top-level GET), `Path=/`, Secure over https.
pub(super) fn set_cookie(public_url: &str, kind: CookieKind, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if public_url.starts_with("https://") { "; Secure" } else { "" };
    let name = cookie_name(public_url, kind);
    HeaderValue::from_str(&format!("{name}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}"))
        .expect("cookie values are base64url, dots and digits")
}

/// The value of the request's cookie `base` (under its https name when served over https).
pub(super) fn read_cookie(headers: &HeaderMap, public_url: &str, kind: CookieKind) -> Option<String> {
    let name = cookie_name(public_url, kind);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

pub(super) fn presented_token(headers: &HeaderMap, public_url: &str) -> Option<String> {
    read_cookie(headers, public_url, SESSION)
}

/// Starts a session for `user` and returns its `Set-Cookie`. A session the request
/// carried is ended first: a sign-in always gets a new id, so a planted cookie is useless.
pub async fn start_session(state: &AppState, user: &UserId, request: &HeaderMap) -> ApiResult<HeaderValue> {
    if let Some(old) = presented_token(request, &state.public_url) {
        state.services.db.delete_session(&hash_secret(&old)).await?;
    }
    let token = random_secret();
    let now = now_ms();
    let max_age_ms = i64::try_from(state.sessions.max_age.as_millis())?;
    state.services.db.insert_session(&hash_secret(&token), user, now, now + max_age_ms).await?;
    Ok(set_cookie(&state.public_url, SESSION, &token, max_age_ms / 1000))
}

/// The user of the request's session cookie, if it names a live session.
pub(super) async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<UserRow>> {
    let Some(token) = presented_token(headers, &state.public_url) else { return Ok(None) };
    let hash = hash_secret(&token);
    let now = now_ms();
    let idle_since = now - i64::try_from(state.sessions.idle_timeout.as_millis())?;
    let Some(found) = state.services.db.find_session_user(&hash, now, idle_since).await? else { return Ok(None) };
    if now - found.last_seen_at >= TOUCH_EVERY_MS {
        state.services.db.touch_session(&hash, now).await?;
    }
    Ok(Some(found.user))
}

/// The header that clears the session cookie (the session itself is already gone).
pub(crate) fn cleared_session_cookie(state: &AppState) -> HeaderValue {
    set_cookie(&state.public_url, SESSION, "", 0)
}

fn ended(state: &AppState) -> ApiResult<Response> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state.public_url, SESSION, "", 0));
    Ok(response)
}

/// `POST /auth/logout`: ends this session.
#[utoipa::path(post, path = "/auth/logout", tag = "account", responses(
    (status = 204, description = "This session (if any) has ended; the cookie is cleared"),
    (status = 403, description = "`csrf_rejected`: a request from another origin."),
))]
pub async fn logout(State(state): State<AppState>, method: Method, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = presented_token(&headers, &state.public_url) {
        check_same_origin(&method, &headers, &state.public_url)?;
        state.services.db.delete_session(&hash_secret(&token)).await?;
        state.live.status.forget_all();
    }
    ended(&state)
}

/// `POST /auth/logout-all`: ends every session and revokes every API token of the user.
#[utoipa::path(post, path = "/auth/logout-all", tag = "account", security(("session" = []), ("bearer" = [])), responses(
    (status = 204, description = "Every session ended and every API token revoked"),
))]
pub async fn logout_all(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Response> {
    let (sessions, tokens) = state.services.db.sign_out_everywhere(&user.user_id()).await?;
    state.live.status.forget_all();
    tracing::info!(user.id = %user.id, sessions, tokens, "signed out everywhere");
    ended(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; pp_session=abc; b=2"));
        assert_eq!(presented_token(&headers, "http://127.0.0.1").as_deref(), Some("abc"));
        assert_eq!(presented_token(&headers, "https://pets.example.org"), None);
    }

    #[test]
    fn over_https_the_cookie_is_host_only_and_secure() {
        let set = set_cookie("https://pets.example.org", SESSION, "abc", 60);
        let set = set.to_str().expect("ascii");
        assert!(set.starts_with("__Host-pp_session=abc;"), "{set}");
        assert!(set.contains("; Secure") && set.contains("; Path=/") && !set.contains("Domain"), "{set}");
        let plain = set_cookie("http://127.0.0.1:8080", SESSION, "abc", 60);
        let plain = plain.to_str().expect("ascii");
        assert!(plain.starts_with("pp_session=abc;") && !plain.contains("Secure"), "{plain}");
    }
}
