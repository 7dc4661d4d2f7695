//! The privacy policy: `GET /v1/policy` (the version in force), `POST /v1/policy/accept`,
//! and the policy's text at `/privacy`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use petportrait_core::db::PolicyVersionRow;
use petportrait_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use petportrait_core::privacy::audit::{self, AuditAction};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    version: String,
    effective_at: String,
    url: String,
}

/// The version in force now. A version published with a future date is not served
/// before that date.
pub async fn in_force(state: &AppState) -> ApiResult<PolicyVersionRow> {
    state.services.db.policy_in_force(now_ms()).await?.ok_or_else(ApiError::not_found)
}

/// A policy's URL as users follow it: ours are paths under `PUBLIC_URL`.
fn absolute_url(state: &AppState, url: &str) -> String {
    if url.starts_with('/') { format!("{}{url}", state.public_url) } else { url.to_owned() }
}

#[utoipa::path(get, path = "/v1/policy", tag = "account", responses(
    (status = 200, description = "The privacy policy in force", body = PolicyView),
    (status = 404, description = "`not_found`: no policy has been published yet."),
))]
pub async fn get_policy(State(state): State<AppState>) -> ApiResult<Json<PolicyView>> {
    let policy = in_force(&state).await?;
    Ok(Json(PolicyView {
        url: absolute_url(&state, &policy.url),
        version: policy.version,
        effective_at: rfc3339(policy.effective_at),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    version: String,
}

/// Records the user's acceptance of the version in force; any other version is refused
/// (nobody can accept a text that is not, or not yet, the policy).
#[utoipa::path(post, path = "/v1/policy/accept", tag = "account", security(("session" = []), ("bearer" = [])), request_body = AcceptRequest, responses(
    (status = 204, description = "The acceptance is recorded"),
    (status = 404, description = "`not_found`: no policy has been published yet."),
    (status = 422, description = "`policy_version_not_in_force`: only the version in force can be accepted."),
))]
pub async fn accept_policy(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(request): JsonBody<AcceptRequest>,
) -> ApiResult<StatusCode> {
    let policy = in_force(&state).await?;
    if request.version != policy.version {
        return Err(ApiError::unprocessable(
            "policy_version_not_in_force",
            format!("the policy in force is version {}", policy.version),
        ));
    }
    let now = now_ms();
    let detail = serde_json::json!({"version": policy.version});
    let keyring = state.services.accounts.keyring();
    let audit = audit::entry(keyring, &user.id, AuditAction::PolicyAccepted, detail, now);
    state.services.db.accept_policy(&user.user_id(), &policy.version, now, &audit).await?;
    tracing::info!(user.id = %user.id, policy.version = %policy.version, "policy accepted");
    Ok(StatusCode::NO_CONTENT)
}

/// The policy's text as published.
pub async fn privacy_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../privacy.html"))
}
