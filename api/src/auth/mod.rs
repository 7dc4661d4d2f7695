//! Who is calling: a session cookie (`sessions.rs`: sign-in, sign-out, timeouts) or a
//! personal API token in `Authorization: Bearer` (`tokens.rs`), and the CSRF check
//! that cookie-authenticated writes must pass (bearer requests are exempt: a browser
//! never adds that header on its own). Dev sign-in lives in `dev_login.rs`.

pub mod dev_login;
pub mod google;
mod picture;
pub mod sessions;
mod tokens;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use base64::Engine;
use petportrait_core::db::UserRow;
use petportrait_core::ids::UserId;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub(crate) use sessions::cleared_session_cookie;
pub use sessions::start_session;
pub use tokens::new_token;

/// Use is recorded at most this often (a session's `last_seen_at`, a token's
/// `last_used_at`), so reading requests do not each cost a write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The signed-in user of a request.
pub struct CurrentUser(pub UserRow);

/// The signed-in user's id, for the status route pollers hit: from this process's
/// two-second cache of credentials (`status_cache.rs`), else found as `CurrentUser` is.
pub struct PollingCaller(pub UserId);

/// The key a request's credential is cached under: the hash of its bearer header, or
/// of its session cookie (a GET needs no same-origin check).
fn credential_key(headers: &HeaderMap, public_url: &str) -> Option<String> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        return Some(format!("b:{}", hash_secret(authorization.to_str().ok()?)));
    }
    sessions::presented_token(headers, public_url).map(|token| format!("s:{}", hash_secret(&token)))
}

impl FromRequestParts<AppState> for PollingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<PollingCaller> {
        let cache = &state.live.status;
        let key = credential_key(&parts.headers, &state.public_url);
        if let Some(user) = key.as_deref().and_then(|key| cache.caller(key)) {
            return Ok(PollingCaller(UserId::from_db(user)));
        }
        let epoch = cache.epoch();
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if let Some(key) = key {
            cache.keep_caller(key, user.id.clone(), epoch);
        }
        Ok(PollingCaller(user.user_id()))
    }
}

/// What a database keeps of a secret: its SHA-256. The secrets are 256 random bits, so
/// a plain hash is enough to make a dump useless.
fn hash_secret(secret: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, URL-safe.
fn random_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
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
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            return tokens::authenticate(state, authorization).await.map(CurrentUser);
        }
        let user = sessions::authenticate(state, &parts.headers).await?.ok_or_else(ApiError::unauthorized)?;
        check_same_origin(&parts.method, &parts.headers, &state.public_url)?;
        Ok(CurrentUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn secrets_are_random_and_stored_hashed() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(hash_secret(&a), a);
        assert_eq!(hash_secret(&a), hash_secret(&a));
    }
}
