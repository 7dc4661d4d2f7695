//! Google sign-in and the age gate: `GET /auth/google/start`, `GET /auth/google/callback`
//! and `POST /auth/age`.
//!
//! The start keeps `state`, `nonce` and the PKCE verifier in a `sign_in_attempts` row
//! under the hash of a random id held by a ten-minute cookie; the callback takes that
//! row (once), compares `state`, and lets `oidc.rs` exchange the code and verify the ID
//! token. A returning user is signed in. A new user gets no account yet: their verified
//! claims travel in a sealed pending-sign-up cookie to the age question, and only a
//! person of 13 or more gets an account. A refusal stores nothing about the person and
//! is remembered by the browser, so a second try is refused too.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Datelike;
use petportrait_core::accounts::{Profile, Subject};
use petportrait_core::db::SignInAttempt;
use petportrait_core::sealing::PENDING_SIGN_UP;
use petportrait_core::time::now_ms;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::picture::copy_picture;
use super::sessions::{CookieKind, read_cookie, set_cookie};
use super::{check_same_origin, hash_secret, random_secret, start_session};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;
use crate::oidc::{Oidc, OidcError, VerifiedIdentity};

const SIGN_IN_COOKIE: CookieKind = CookieKind::SignIn;
const PENDING_COOKIE: CookieKind = CookieKind::PendingSignUp;
const REFUSED_COOKIE: CookieKind = CookieKind::AgeRefused;
const SIGN_IN_TTL_SECS: i64 = 600;
const PENDING_TTL_SECS: i64 = 900;
const REFUSAL_TTL_SECS: i64 = 365 * 86_400;
/// The service is not directed to children under 13 (the privacy policy).
const MINIMUM_AGE: i32 = 13;

fn oidc(state: &AppState) -> ApiResult<&Oidc> {
    state.oidc.as_deref().ok_or_else(ApiError::not_found)
}

fn redirect(to: &str, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    response
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn under_age() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "under_age", "PetPortrait is not available to children under 13")
}

fn provider_error(error: OidcError) -> ApiError {
    match error {
        OidcError::Unavailable(reason) => {
            tracing::warn!(reason = %reason, "the identity provider is unavailable");
            ApiError::unavailable(
                "identity_provider_unavailable",
                "Google sign-in is unavailable; try again shortly",
                30,
            )
        }
        OidcError::Rejected(reason) => {
            tracing::warn!(reason = %reason, "a sign-in was refused");
            ApiError::new(StatusCode::UNAUTHORIZED, "sign_in_failed", "the sign-in could not be verified")
        }
        OidcError::EmailNotVerified => ApiError::new(
            StatusCode::FORBIDDEN,
            "email_not_verified",
            "your Google account's e-mail address is not verified",
        ),
    }
}

/// `GET /auth/google/start`: a 302 to the provider.
#[utoipa::path(get, path = "/auth/google/start", tag = "account", responses(
    (status = 302, description = "To Google's authorization endpoint (code flow with PKCE S256, `state` and `nonce`)"),
    (status = 404, description = "`not_found`: Google sign-in is not configured."),
    (status = 503, description = "`identity_provider_unavailable`: Google does not answer (`Retry-After`)."),
))]
pub async fn start(State(state): State<AppState>) -> ApiResult<Response> {
    let authorization = oidc(&state)?.authorize().await.map_err(provider_error)?;
    let id = random_secret();
    let attempt = SignInAttempt {
        state: authorization.state,
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
    };
    state.services.db.insert_sign_in_attempt(&hash_secret(&id), &attempt, now_ms() + SIGN_IN_TTL_SECS * 1000).await?;
    Ok(redirect(&authorization.url, [set_cookie(&state.public_url, SIGN_IN_COOKIE, &id, SIGN_IN_TTL_SECS)]))
}

/// `GET /auth/google/callback?code=&state=`.
#[utoipa::path(get, path = "/auth/google/callback", tag = "account", params(
    ("code" = Option<String>, Query, description = "The authorization code"),
    ("state" = Option<String>, Query, description = "The `state` of /auth/google/start"),
), responses(
    (status = 302, description = "To the app: signed in (a known person) or to the age question (a new one)"),
    (status = 400, description = "`sign_in_state_mismatch`, `sign_in_expired`, `sign_in_failed`: the attempt does not match, is too old, or Google reported an error."),
    (status = 401, description = "`sign_in_failed`: the ID token does not verify."),
    (status = 403, description = "`email_not_verified`: Google has not verified the e-mail address.\n\n`under_age`: this browser answered the age question under 13."),
    (status = 404, description = "`not_found`: Google sign-in is not configured."),
    (status = 503, description = "`identity_provider_unavailable`: Google does not answer (`Retry-After`)."),
))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let oidc = oidc(&state)?;
    // The attempt is single use whatever happens next: its cookie goes now.
    let clear = set_cookie(&state.public_url, SIGN_IN_COOKIE, "", 0);
    let outcome = verify_callback(&state, oidc, &headers, &query).await;
    let identity = match outcome {
        Ok(identity) => identity,
        Err(error) => return Ok(with_cookies(error.into_response(), [clear])),
    };
    let subject = Subject::Oidc { issuer: identity.issuer.clone(), subject: identity.subject.clone() };
    let profile =
        Profile { name: identity.name.clone(), email: identity.email.clone(), picture_url: identity.picture.clone() };
    if let Some(user) = state.services.accounts.find(&subject).await? {
        state.services.accounts.refresh(&user, &profile).await?;
        copy_picture(&state, &user, identity.picture.as_deref()).await;
        let session = start_session(&state, &user.user_id(), &headers).await?;
        tracing::info!(user.id = %user.id, "signed in with Google");
        return Ok(redirect("/", [clear, session]));
    }
    if read_cookie(&headers, &state.public_url, REFUSED_COOKIE).is_some() {
        return Ok(with_cookies(under_age().into_response(), [clear]));
    }
    let pending = seal_pending(&state, &identity)?;
    Ok(redirect("/?sign-up=age", [clear, set_cookie(&state.public_url, PENDING_COOKIE, &pending, PENDING_TTL_SECS)]))
}

async fn verify_callback(
    state: &AppState,
    oidc: &Oidc,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> ApiResult<VerifiedIdentity> {
    if let Some(error) = query.get("error") {
        tracing::info!(provider.error = %error.chars().take(64).collect::<String>(), "the provider ended the sign-in");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "sign_in_failed", "the sign-in was not completed"));
    }
    let stale = || ApiError::new(StatusCode::BAD_REQUEST, "sign_in_expired", "start the sign-in again");
    let id = read_cookie(headers, &state.public_url, SIGN_IN_COOKIE).ok_or_else(stale)?;
    let attempt = state.services.db.take_sign_in_attempt(&hash_secret(&id), now_ms()).await?.ok_or_else(stale)?;
    let returned = query.get("state").map(String::as_bytes).unwrap_or_default();
    if !bool::from(returned.ct_eq(attempt.state.as_bytes())) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "sign_in_state_mismatch", "start the sign-in again"));
    }
    let code = query
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "sign_in_failed", "the callback carries no code"))?;
    oidc.finish(code, &attempt.pkce_verifier, &attempt.nonce).await.map_err(provider_error)
}

/// What the pending sign-up cookie carries, sealed: readable by nobody but us.
#[derive(Serialize, Deserialize)]
struct PendingSignUp {
    iss: String,
    sub: String,
    email: String,
    name: String,
    picture: Option<String>,
    /// Milliseconds; the sealed value is refused after it.
    exp: i64,
}

fn seal_pending(state: &AppState, identity: &VerifiedIdentity) -> ApiResult<String> {
    let pending = PendingSignUp {
        iss: identity.issuer.clone(),
        sub: identity.subject.clone(),
        email: identity.email.clone(),
        name: identity.name.clone(),
        picture: identity.picture.clone(),
        exp: now_ms() + PENDING_TTL_SECS * 1000,
    };
    let json = serde_json::to_string(&pending).map_err(|e| ApiError::internal(&e))?;
    Ok(state.services.accounts.keyring().seal(PENDING_SIGN_UP, "", &json))
}

fn open_pending(state: &AppState, headers: &HeaderMap) -> Option<PendingSignUp> {
    let sealed = read_cookie(headers, &state.public_url, PENDING_COOKIE)?;
    let json = state.services.accounts.keyring().open(PENDING_SIGN_UP, "", &sealed).ok()?;
    serde_json::from_str::<PendingSignUp>(&json).ok().filter(|p| p.exp > now_ms())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeAnswer {
    birth_year: i32,
    birth_month: u32,
}

/// Whole years of age today of someone born in that month, counting a birthday in the
/// current month as not yet reached (only the month is asked, so doubt counts against).
fn age_in_years(birth_year: i32, birth_month: u32, today: chrono::NaiveDate) -> i32 {
    let years = today.year() - birth_year;
    if today.month() > birth_month { years } else { years - 1 }
}

/// `POST /auth/age`: completes a pending sign-up.
#[utoipa::path(post, path = "/auth/age", tag = "account", request_body = AgeAnswer, responses(
    (status = 204, description = "13 or older: the account is created and the session starts"),
    (status = 400, description = "`no_pending_sign_up`: sign in with Google first."),
    (status = 403, description = "`under_age`: under 13; nothing about the person is stored.\n\n`csrf_rejected`: a request from another origin."),
    (status = 422, description = "`invalid_birth_date`: a year from 1900 and a month from 1 to 12."),
))]
pub async fn age(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    JsonBody(answer): JsonBody<AgeAnswer>,
) -> ApiResult<Response> {
    check_same_origin(&method, &headers, &state.public_url)?;
    if read_cookie(&headers, &state.public_url, REFUSED_COOKIE).is_some() {
        return Err(under_age());
    }
    let today = chrono::Utc::now().date_naive();
    if !(1900..=today.year()).contains(&answer.birth_year) || !(1..=12).contains(&answer.birth_month) {
        return Err(ApiError::unprocessable("invalid_birth_date", "give a birth year and a month from 1 to 12"));
    }
    let pending = open_pending(&state, &headers)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no_pending_sign_up", "sign in with Google first"))?;
    let clear_pending = set_cookie(&state.public_url, PENDING_COOKIE, "", 0);
    if age_in_years(answer.birth_year, answer.birth_month, today) < MINIMUM_AGE {
        // No identifier of the person in this line, nor anywhere else: nothing is stored.
        tracing::info!("the age gate refused a sign-up");
        let refused = set_cookie(&state.public_url, REFUSED_COOKIE, "1", REFUSAL_TTL_SECS);
        return Ok(with_cookies(under_age().into_response(), [clear_pending, refused]));
    }
    let subject = Subject::Oidc { issuer: pending.iss, subject: pending.sub };
    let profile_picture = pending.picture.clone();
    let profile = Profile { name: pending.name, email: pending.email, picture_url: pending.picture };
    let (user, created) =
        state.services.accounts.find_or_create(&subject, &profile, state.starter_credits, now_ms()).await?;
    if created {
        tracing::info!(user.id = %user.id, "account created through Google sign-in");
    }
    copy_picture(&state, &user, profile_picture.as_deref()).await;
    let session = start_session(&state, &user.user_id(), &headers).await?;
    Ok(with_cookies(StatusCode::NO_CONTENT.into_response(), [clear_pending, session]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_counts_a_birthday_this_month_as_not_yet() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 4).expect("date");
        assert_eq!(age_in_years(2013, 11, today), 13);
        assert_eq!(age_in_years(2013, 12, today), 12, "born this month: maybe not 13 yet");
        assert_eq!(age_in_years(2014, 1, today), 12);
        assert_eq!(age_in_years(1990, 6, today), 36);
    }
}
