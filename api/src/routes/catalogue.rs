//! The catalogue: `GET /v1/styles` (what can be ordered, at what cost) and
//! `GET /v1/quote` (what one generation would cost the caller).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use petportrait_core::domain::{CATALOGUE, GenerationKind};
use petportrait_core::output_options::OutputOptions;
use serde::Serialize;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

#[derive(Serialize, utoipa::ToSchema)]
pub struct StyleView {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    credits: i64,
    /// False while no model server of this style is ready (see `models.rs`).
    available: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KindView {
    kind: &'static str,
    available: bool,
    styles: Vec<StyleView>,
    /// What a request's `options` may choose for this kind (null: nothing yet).
    options: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StylesView {
    kinds: Vec<KindView>,
}

/// The catalogue: every kind, whether it can be ordered now (one of its styles can),
/// its styles, their costs and availability. Like every `/v1` route it needs a
/// signed-in caller.
#[utoipa::path(get, path = "/v1/styles", tag = "catalogue", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "Every kind and style, its cost and whether it can be ordered now", body = StylesView),
))]
pub async fn list_styles(State(state): State<AppState>, _caller: CurrentUser) -> ApiResult<Json<StylesView>> {
    let mut kinds = Vec::new();
    for kind in GenerationKind::ALL {
        let ready = crate::models::available_styles(&state.models, &state.services.db, kind).await?;
        let styles: Vec<StyleView> = CATALOGUE
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| StyleView {
                id: s.id,
                name: s.name,
                description: s.description,
                credits: s.credits,
                available: ready.as_ref().is_none_or(|ready| ready.contains(s.id)),
            })
            .collect();
        let options = match kind {
            GenerationKind::Portrait => OutputOptions::catalogue(),
            _ => serde_json::Value::Null,
        };
        let available = styles.iter().any(|s| s.available);
        kinds.push(KindView { kind: kind.as_str(), available, styles, options });
    }
    Ok(Json(StylesView { kinds }))
}

/// What a generation would cost the caller, before ordering it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QuoteView {
    kind: &'static str,
    style: &'static str,
    credits: i64,
    /// The caller's credits not held by running generations.
    available: i64,
    affordable: bool,
}

/// `GET /v1/quote?kind=portrait&style=oil_paint`.
#[utoipa::path(get, path = "/v1/quote", tag = "catalogue", security(("session" = []), ("bearer" = [])), params(
    ("kind" = String, Query, description = "`portrait`, `music` or `sculpture`"),
    ("style" = String, Query, description = "A style of that kind (GET /v1/styles)"),
), responses(
    (status = 200, description = "What one generation costs and whether the caller can afford it", body = QuoteView),
    (status = 422, description = "`unknown_kind`, `unknown_style`: not in the catalogue."),
))]
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
