//! `GET /v1/me`, `GET /v1/styles`, `GET /v1/quote`, `GET /v1/credits`, `GET /v1/credits/ledger`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use petportrait_core::domain::{CATALOGUE, GenerationKind};
use petportrait_core::output_options::OutputOptions;
use petportrait_core::time::rfc3339;
use serde::Serialize;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult, internal};
use crate::pagination::{PageRequest, split_page};
use crate::views::{MeView, Page};

pub async fn get_me(CurrentUser(user): CurrentUser) -> Json<MeView> {
    Json(MeView::from_row(&user))
}

#[derive(Serialize)]
pub struct StyleView {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    credits: i64,
}

#[derive(Serialize)]
pub struct KindView {
    kind: &'static str,
    available: bool,
    styles: Vec<StyleView>,
    /// What a request's `options` may choose for this kind (null: nothing yet).
    options: serde_json::Value,
}

#[derive(Serialize)]
pub struct StylesView {
    kinds: Vec<KindView>,
}

/// The catalogue: every kind, whether it can be ordered today, its styles and costs.
/// Like every `/v1` route it needs a signed-in caller.
pub async fn list_styles(_caller: CurrentUser) -> Json<StylesView> {
    let kinds = GenerationKind::ALL
        .into_iter()
        .map(|kind| {
            let styles: Vec<StyleView> = CATALOGUE
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| StyleView { id: s.id, name: s.name, description: s.description, credits: s.credits })
                .collect();
            let options = match kind {
                GenerationKind::Portrait => OutputOptions::catalogue(),
                _ => serde_json::Value::Null,
            };
            KindView { kind: kind.as_str(), available: !styles.is_empty(), styles, options }
        })
        .collect();
    Json(StylesView { kinds })
}

/// What a generation would cost the caller, before ordering it.
#[derive(Serialize)]
pub struct QuoteView {
    kind: &'static str,
    style: &'static str,
    credits: i64,
    /// The caller's credits not held by running generations.
    available: i64,
    affordable: bool,
}

/// `GET /v1/quote?kind=portrait&style=oil_paint`.
pub async fn quote(
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<QuoteView>> {
    let (Some(kind), Some(style)) = (query.get("kind"), query.get("style")) else {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            "give kind and style, as in ?kind=portrait&style=watercolor",
        ));
    };
    let style = crate::routes::generations::resolve_style(kind, style)?;
    let available = user.credits_balance - user.credits_held;
    Ok(Json(QuoteView {
        kind: style.kind.as_str(),
        style: style.id,
        credits: style.credits,
        available,
        affordable: available >= style.credits,
    }))
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
    kind: String,
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
    let rows = state.services.db.list_ledger(&user.user_id(), page.after(), page.limit + 1).await.map_err(internal)?;
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
