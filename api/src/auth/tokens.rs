//! Personal API tokens: `ppat_` and 256 random bits (the prefix lets secret scanners
//! recognise a leaked one), shown once, stored as a hash, sent as `Authorization: Bearer`.

use axum::http::HeaderValue;
use petportrait_core::db::UserRow;
use petportrait_core::time::now_ms;

use super::{TOUCH_EVERY_MS, hash_secret, random_secret};
use crate::AppState;
use crate::error::{ApiError, ApiResult};

const TOKEN_PREFIX: &str = "ppat_";

/// A new token's secret and the hash to store.
pub fn new_token() -> (String, String) {
    let token = format!("{TOKEN_PREFIX}{}", random_secret());
    let hash = hash_secret(&token);
    (token, hash)
}

/// Whether `text` has a token's shape: the prefix and 43 URL-safe base64 characters.
fn is_token_shaped(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The user of an `Authorization: Bearer` token that has not been revoked; anything
/// else in that header answers 401, whatever cookie came with it.
pub(super) async fn authenticate(state: &AppState, authorization: &HeaderValue) -> ApiResult<UserRow> {
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| is_token_shaped(t))
        .ok_or_else(ApiError::unauthorized)?;
    let found = state.services.db.find_token_user(&hash_secret(token)).await?.ok_or_else(ApiError::unauthorized)?;
    let now = now_ms();
    if found.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY_MS) {
        state.services.db.touch_api_token(&found.token_id, now).await?;
    }
    Ok(found.user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_well_shaped() {
        let (token, hash) = new_token();
        assert!(token.starts_with("ppat_") && is_token_shaped(&token), "{token}");
        assert!(!hash.contains(&token));
        assert!(!is_token_shaped("ppat_short"));
        assert!(!is_token_shaped(&token.replace("ppat_", "ghp_")));
    }
}
