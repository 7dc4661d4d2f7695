//! `/v1/me/tokens`: the caller's personal API tokens. The secret is in the creation's
//! answer only; lists show names and dates.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use petportrait_core::ids::ApiTokenId;
use petportrait_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{CurrentUser, new_token};
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathId, Query};
use crate::json::JsonBody;
use crate::pagination::{PageRequest, split_page};
use crate::views::Page;

/// Enough for every script and integration a person runs; a bound on the table.
const MAX_TOKENS_PER_USER: i64 = 50;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// 1 to 100 characters, to tell the tokens apart.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedTokenView {
    id: String,
    name: String,
    /// Shown here only: the database keeps its hash.
    token: String,
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    id: String,
    name: String,
    created_at: String,
    last_used_at: Option<String>,
}

#[utoipa::path(post, path = "/v1/me/tokens", tag = "account", security(("session" = []), ("bearer" = [])), request_body = CreateTokenRequest, responses(
    (status = 201, description = "The token; its secret is shown only in this answer", body = CreatedTokenView),
    (status = 422, description = "`invalid_name`: not 1 to 100 printable characters.\n\n`too_many_tokens`: the account holds the most it may; revoke one first."),
))]
pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> ApiResult<Response> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable("invalid_name", "name must be 1 to 100 characters"));
    }
    let user_id = user.user_id();
    if state.services.db.count_api_tokens(&user_id).await? >= MAX_TOKENS_PER_USER {
        return Err(ApiError::unprocessable(
            "too_many_tokens",
            format!("an account holds at most {MAX_TOKENS_PER_USER} tokens; revoke one first"),
        ));
    }
    let (token, hash) = new_token();
    let id = ApiTokenId::generate();
    let now = now_ms();
    state.services.db.insert_api_token(&id, &user_id, name, &hash, now).await?;
    tracing::info!(user.id = %user.id, token.id = %id, "API token created");
    let view = CreatedTokenView { id: id.to_string(), name: name.to_owned(), token, created_at: rfc3339(now) };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/me/tokens", tag = "account", security(("session" = []), ("bearer" = [])), params(crate::openapi::PageParams), responses(
    (status = 200, description = "The caller's tokens, without secrets", body = Page<TokenView>),
))]
pub async fn list_tokens(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<TokenView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let rows = state.services.db.list_api_tokens(&user.user_id(), page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    let data = rows
        .into_iter()
        .map(|r| TokenView {
            id: r.id,
            name: r.name,
            created_at: rfc3339(r.created_at),
            last_used_at: r.last_used_at.map(rfc3339),
        })
        .collect();
    Ok(Json(Page { data, next_cursor }))
}

#[utoipa::path(delete, path = "/v1/me/tokens/{id}", tag = "account", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A token id (`tok_…`)"),
), responses(
    (status = 204, description = "Revoked"),
))]
pub async fn delete_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<ApiTokenId>,
) -> ApiResult<StatusCode> {
    if state.services.db.delete_api_token(&user.user_id(), id.as_str()).await? {
        state.live.status.forget_all();
        tracing::info!(user.id = %user.id, token.id = %id, "API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
