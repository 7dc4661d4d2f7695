//! The web role: a thin axum API. It validates requests, places credit holds, writes
//! rows and enqueues jobs that carry ids only; it never calls a model.

mod auth;
mod error;
mod extract;
mod guards;
mod http_metrics;
mod idempotency;
mod json;
mod live;
pub use http_metrics::serve_metrics_only;
mod models;
mod oidc;
mod pagination;
mod request_id;
mod routes;
mod serve;
mod status_cache;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use petportrait_core::config::{Config, PaymentsConfig, SessionConfig, UploadLimits};
use petportrait_core::services::Services;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub public_url: String,
    pub starter_credits: i64,
    pub uploads: UploadLimits,
    /// Upload decodes running at once: one per core (their memory is the budget's).
    pub decode_slots: Arc<Semaphore>,
    /// A request body must have arrived whole within this (`HTTP_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Idle and absolute session timeouts.
    pub sessions: SessionConfig,
    /// Credit packs for sale; purchases need `payments.stripe`.
    pub payments: PaymentsConfig,
    /// Stripe's API, when purchases are on.
    pub stripe: Option<petportrait_core::stripe::StripeClient>,
    /// Google sign-in, when configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
    /// The event streams open in this process, woken by the change feed.
    pub live: Arc<live::Watchers>,
    /// `SSE_HEARTBEAT`.
    pub sse_heartbeat: Duration,
    /// Which model runs each kind (`models.rs` reads the Cog kinds' availability).
    pub models: petportrait_core::config::ModelsConfig,
}

impl AppState {
    pub fn new(config: &Config, services: Services) -> AppState {
        AppState {
            services,
            public_url: config.public_url.clone(),
            starter_credits: config.starter_credits,
            uploads: config.uploads.clone(),
            body_timeout: config.http.body_timeout,
            sessions: config.sessions.clone(),
            payments: config.payments.clone(),
            stripe: config.payments.stripe.clone().map(petportrait_core::stripe::StripeClient::new),
            oidc: config.google.as_ref().and_then(|google| match oidc::Oidc::new(google, &config.public_url) {
                Ok(client) => Some(Arc::new(client)),
                Err(problem) => {
                    tracing::error!(problem = %problem, "Google sign-in is configured but cannot be set up; it is off");
                    None
                }
            }),
            decode_slots: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
            live: Arc::new(live::Watchers::new(CancellationToken::new())),
            sse_heartbeat: config.http.sse_heartbeat,
            models: config.models.clone(),
        }
    }
}

/// Every route of the API.
pub fn router(state: AppState, dev_login: bool) -> Router {
    let upload_body_limit = routes::uploads::upload_body_limit(&state.uploads);
    let mut app = Router::new()
        .route("/", get(page))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(http_metrics::metrics))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/google/start", get(auth::google::start))
        .route("/auth/google/callback", get(auth::google::callback))
        .route("/auth/age", post(auth::google::age))
        .route("/privacy", get(routes::policy::privacy_page))
        .route("/v1/policy", get(routes::policy::get_policy))
        .route("/v1/policy/accept", post(routes::policy::accept_policy))
        .route("/v1/me", get(routes::account::get_me).patch(routes::account::patch_me))
        .route("/v1/me/tokens", post(routes::tokens::create_token).get(routes::tokens::list_tokens))
        .route("/v1/me/tokens/{id}", delete(routes::tokens::delete_token))
        .route("/v1/me/webhook-secret", get(routes::webhooks::get_webhook_secret))
        .route("/v1/me/webhook-secret/rotate", post(routes::webhooks::rotate_webhook_secret))
        .route("/v1/webhook-endpoints", post(routes::webhooks::create_endpoint).get(routes::webhooks::list_endpoints))
        .route(
            "/v1/webhook-endpoints/{id}",
            get(routes::webhooks::get_endpoint)
                .patch(routes::webhooks::update_endpoint)
                .delete(routes::webhooks::delete_endpoint),
        )
        .route("/v1/webhook-endpoints/{id}/deliveries", get(routes::webhooks::list_deliveries))
        .route("/v1/webhook-deliveries/{id}/retry", post(routes::webhooks::retry_delivery))
        .route("/v1/styles", get(routes::catalogue::list_styles))
        .route("/v1/quote", get(routes::catalogue::quote))
        .route("/v1/credits", get(routes::account::get_credits))
        .route("/v1/credits/ledger", get(routes::account::list_ledger))
        .route("/v1/payments", get(routes::payments::list_payments))
        .route("/v1/checkout", post(routes::payments::create_checkout))
        .route(
            "/webhooks/stripe",
            post(routes::payments::stripe_webhook)
                .layer(DefaultBodyLimit::max(routes::payments::STRIPE_EVENT_MAX_BYTES)),
        )
        .route("/v1/uploads", post(routes::uploads::create_upload).layer(DefaultBodyLimit::max(upload_body_limit)))
        .route("/v1/uploads/{id}", get(routes::uploads::get_upload))
        .route(
            "/v1/generations",
            post(routes::generations::create_generation).get(routes::generations::list_generations),
        )
        .route("/v1/generations/{id}", get(routes::generations::get_generation))
        .route("/v1/generations/{id}/cancel", post(routes::generations::cancel_generation))
        .route("/v1/generations/{id}/events", get(routes::events::generation_events))
        .route("/v1/generations/{id}/save", post(routes::gallery::save_generation))
        .route("/v1/gallery", get(routes::gallery::list_gallery))
        .route("/v1/gallery/{id}", delete(routes::gallery::delete_gallery_item))
        .route("/v1/files/{id}", get(routes::files::get_file));
    if dev_login {
        app = app.route("/auth/dev-login", post(auth::dev_login));
    }
    app.route_layer(axum::middleware::from_fn(http_metrics::record))
        .fallback(|method: axum::http::Method| async move {
            http_metrics::count_unrouted(&method, 404);
            ApiError::not_found()
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            http_metrics::count_unrouted(&method, 405);
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(guards::HostPolicy::new(&state.public_url), guards::check_host))
        .layer(TraceLayer::new_for_http().make_span_with(request_id::span))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// The small page for trying the service in a browser (embedded mode).
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("page.html"))
}

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes the
/// requests in flight.
pub async fn run(
    config: &Config,
    services: Services,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    petportrait_core::metrics::install();
    let state = AppState::new(config, services);
    // The streams end as soon as the API starts stopping (they would hold the shutdown
    // open until SHUTDOWN_TIMEOUT otherwise); their clients reconnect elsewhere.
    let live = state.live.clone();
    let streams_end = live.shutdown.clone();
    let feed = tokio::spawn(live.run(state.services.changes.clone()));
    let app = router(state, config.dev_login);
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        streams_end.cancel();
    });
    let served = serve::serve(listener, app, &config.http, shutdown).await;
    feed.abort();
    served
}
