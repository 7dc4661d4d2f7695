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
mod openapi;
mod pagination;
mod rate_limits;
mod request_id;
mod routes;
mod serve;
mod status_cache;
mod views;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use petportrait_core::config::{Config, PaymentsConfig, SessionConfig, UploadLimits};
use petportrait_core::services::Services;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

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
    /// `RATE_LIMIT_*` and `TRUSTED_PROXIES` (`rate_limits.rs`).
    pub limits: petportrait_core::config::RateLimits,
    /// `S3_PUBLIC_ENDPOINT`: where file downloads redirect to, so the page may load them.
    pub object_links: Option<String>,
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
            limits: config.limits.clone(),
            object_links: config.s3.public_endpoint.clone(),
        }
    }
}

/// Every route of the API. The documented ones are registered through utoipa-axum, which
/// takes each one's method and path from its handler's `#[utoipa::path]` (see `openapi.rs`).
pub fn router(state: AppState, dev_login: bool) -> Router {
    use routes::{
        account, catalogue, events, files, gallery, generations, health, payments, policy, privacy, tokens, uploads,
        webhooks,
    };
    let upload_body_limit = uploads::upload_body_limit(&state.uploads);
    // The routes that need no sign-in, limited per client address (the probes, the
    // metrics and Stripe's events are not: they come from our own infrastructure or
    // from Stripe, which retries a refusal for days).
    let mut anonymous = OpenApiRouter::new()
        .routes(routes!(openapi::document))
        .routes(routes!(auth::sessions::logout))
        .routes(routes!(auth::google::start))
        .routes(routes!(auth::google::callback))
        .routes(routes!(auth::google::age))
        .routes(routes!(policy::get_policy))
        .route("/", get(move |state| web::index(state, dev_login)))
        .route("/assets/{*path}", get(web::asset))
        .route("/privacy", get(policy::privacy_page))
        // The documentation page: Swagger UI, its assets compiled into the binary.
        .merge(OpenApiRouter::from(Router::from(
            SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )));
    if dev_login {
        anonymous = anonymous.routes(routes!(auth::dev_login::dev_login));
    }
    openapi::limited_per_address(anonymous.get_openapi_mut());
    let anonymous =
        anonymous.route_layer(axum::middleware::from_fn_with_state(state.clone(), rate_limits::limit_anonymous));
    let api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(anonymous)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(http_metrics::metrics))
        .routes(routes!(auth::sessions::logout_all))
        .routes(routes!(policy::accept_policy))
        .routes(routes!(account::get_me, account::patch_me))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::delete_token))
        .routes(routes!(webhooks::get_webhook_secret))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(webhooks::create_endpoint, webhooks::list_endpoints))
        .routes(routes!(webhooks::get_endpoint, webhooks::update_endpoint, webhooks::delete_endpoint))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(catalogue::list_styles))
        .routes(routes!(catalogue::quote))
        .routes(routes!(account::get_credits))
        .routes(routes!(account::list_ledger))
        .routes(routes!(payments::list_payments))
        .routes(routes!(payments::create_checkout))
        .routes(routes!(payments::stripe_webhook).layer(DefaultBodyLimit::max(payments::STRIPE_EVENT_MAX_BYTES)))
        .routes(routes!(uploads::create_upload).layer(DefaultBodyLimit::max(upload_body_limit)))
        .routes(routes!(uploads::get_upload))
        .routes(routes!(generations::create_generation, generations::list_generations))
        .routes(routes!(generations::get_generation))
        .routes(routes!(generations::cancel_generation))
        .routes(routes!(events::generation_events))
        .routes(routes!(gallery::save_generation))
        .routes(routes!(gallery::list_gallery))
        .routes(routes!(gallery::delete_gallery_item))
        .routes(routes!(files::get_file))
        .routes(routes!(privacy::request_export))
        .routes(routes!(privacy::request_deletion))
        .routes(routes!(privacy::list_requests))
        .routes(routes!(privacy::get_request))
        .routes(routes!(privacy::download_export));
    let (api, mut document) = api.split_for_parts();
    openapi::complete(&mut document);
    api.route_layer(axum::middleware::from_fn(http_metrics::record))
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
        .layer(axum::Extension(openapi::Document::new(&document)))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            guards::HostPolicy::new(&state.public_url, state.object_links.as_deref()),
            guards::check_host,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_id::span))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
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
    tokio::task::spawn_blocking(web::warm);
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
