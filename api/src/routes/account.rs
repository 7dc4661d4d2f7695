//! The caller's account: `GET /v1/me`, `PATCH /v1/me` (correction), `GET /v1/credits`,
//! `GET /v1/credits/ledger`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use petportrait_core::config::CreditPack;
use petportrait_core::db::UserRow;
use petportrait_core::domain::{CATALOGUE, GenerationKind, LedgerKind, find_style};
use petportrait_core::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::json::JsonBody;
use crate::pagination::{PageRequest, split_page};
use crate::views::{MeView, Page, PolicyStatusView};

#[utoipa::path(get, path = "/v1/me", tag = "account", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "The caller's profile, credits and policy status", body = MeView),
))]
pub async fn get_me(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<MeView>> {
    me_view(&state, &user).await.map(Json)
}

async fn me_view(state: &AppState, user: &UserRow) -> ApiResult<MeView> {
    let profile = state.services.accounts.profile(user)?;
    let policy = PolicyStatusView {
        accepted_version: state.services.db.accepted_policy(&user.user_id()).await?,
        current_version: state.services.db.policy_in_force(now_ms()).await?.map(|p| p.version),
    };
    Ok(MeView::new(user, profile, policy, &state.public_url))
}

/// What a user may set as preferences; any other key is refused.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// The kind the app offers first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_kind: Option<GenerationKind>,
    /// The style the app offers first: a style of the catalogue (of `default_kind` when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_style: Option<String>,
}

impl Preferences {
    fn validate(&self) -> ApiResult<()> {
        if let Some(style) = &self.default_style {
            let known = match self.default_kind {
                Some(kind) => find_style(kind, style).is_some(),
                None => CATALOGUE.iter().any(|s| s.id == style),
            };
            if !known {
                return Err(ApiError::unprocessable(
                    "invalid_preferences",
                    format!("default_style {style:?} is not a style of the catalogue (GET /v1/styles)"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequest {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Replaces the preferences whole.
    #[schema(value_type = Option<Preferences>)]
    preferences: Option<serde_json::Value>,
}

/// `PATCH /v1/me`: the user corrects their name and/or replaces their preferences.
#[utoipa::path(patch, path = "/v1/me", tag = "account", security(("session" = []), ("bearer" = [])), request_body = CorrectionRequest, responses(
    (status = 200, description = "The corrected profile", body = MeView),
    (status = 422, description = "`invalid_name`: not 1 to 100 printable characters.\n\n`invalid_preferences`: an unknown key or a style not in the catalogue."),
))]
pub async fn patch_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(request): JsonBody<CorrectionRequest>,
) -> ApiResult<Json<MeView>> {
    let name = match request.name.as_deref().map(str::trim) {
        Some(name) if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) => {
            return Err(ApiError::unprocessable("invalid_name", "name must be 1 to 100 characters"));
        }
        other => other,
    };
    let preferences = match request.preferences {
        None => None,
        Some(value) => {
            let parsed: Preferences = serde_json::from_value(value)
                .map_err(|e| ApiError::unprocessable("invalid_preferences", format!("invalid preferences: {e}")))?;
            parsed.validate()?;
            Some(serde_json::to_string(&parsed).map_err(|e| ApiError::internal(&e))?)
        }
    };
    let now = now_ms();
    state.services.accounts.correct(&user, name, preferences.as_deref(), now).await?;
    // Field names only: what was corrected, never the values.
    tracing::info!(user.id = %user.id, name = name.is_some(), preferences = preferences.is_some(), "profile corrected");
    let user = state.services.db.get_user(&user.user_id()).await?.ok_or_else(ApiError::not_found)?;
    me_view(&state, &user).await.map(Json)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreditsResponse {
    balance: i64,
    held: i64,
    /// The packs for sale (`CREDIT_PACKS`); empty while purchases are off (no Stripe keys).
    packs: Vec<CreditPack>,
}

#[utoipa::path(get, path = "/v1/credits", tag = "credits", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "Balance, held credits and the packs for sale", body = CreditsResponse),
))]
pub async fn get_credits(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Json<CreditsResponse> {
    let packs = if state.payments.stripe.is_some() { state.payments.packs.clone() } else { Vec::new() };
    Json(CreditsResponse { balance: user.credits_balance, held: user.credits_held, packs })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LedgerEntryView {
    id: String,
    kind: LedgerKind,
    amount: i64,
    generation_id: Option<String>,
    created_at: String,
}

#[utoipa::path(get, path = "/v1/credits/ledger", tag = "credits", security(("session" = []), ("bearer" = [])), params(crate::openapi::PageParams), responses(
    (status = 200, description = "The caller's ledger, newest first", body = Page<LedgerEntryView>),
))]
pub async fn list_ledger(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<LedgerEntryView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let rows = state.services.db.list_ledger(&user.user_id(), page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    let data = rows
        .into_iter()
        .map(|r| LedgerEntryView {
            id: r.id,
            kind: r.kind,
            amount: r.amount,
            generation_id: r.generation_id,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(Json(Page { data, next_cursor }))
}
