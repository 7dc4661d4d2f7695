//! The caller's account: `GET /v1/me`, `GET /v1/credits`, `GET /v1/credits/ledger`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use petportrait_core::domain::LedgerKind;
use petportrait_core::time::rfc3339;
use serde::Serialize;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::pagination::{PageRequest, split_page};
use crate::views::{MeView, Page};

pub async fn get_me(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<MeView>> {
    let profile = state.services.accounts.profile(&user)?;
    Ok(Json(MeView::new(&user, profile)))
}

#[derive(Serialize)]
pub struct CreditsResponse {
    balance: i64,
    held: i64,
    /// Purchases arrive with payments; until then credits come from grants only.
    packs: Vec<serde_json::Value>,
}

pub async fn get_credits(CurrentUser(user): CurrentUser) -> Json<CreditsResponse> {
    Json(CreditsResponse { balance: user.credits_balance, held: user.credits_held, packs: Vec::new() })
}

#[derive(Serialize)]
pub struct LedgerEntryView {
    id: String,
    kind: LedgerKind,
    amount: i64,
    generation_id: Option<String>,
    created_at: String,
}

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
